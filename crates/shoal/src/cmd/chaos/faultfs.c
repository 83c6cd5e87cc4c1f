/*
 * The fault shim of `shoal chaos` (see shim.rs): an LD_PRELOAD library every process of a
 * machine is started with. Inert until armed through the control file named by
 * $SHOAL_CHAOS_CONTROL, which this maps shared and re-reads on every call, so a fault is armed
 * or disarmed in running processes by rewriting the file in place (never truncating it: a
 * mapped page past the end of a file is SIGBUS).
 *
 * - fsync/fdatasync of a file under `eio_prefix` fail with EIO (a failing disk; F6, fsyncgate),
 *   and with `fail_write` so do write/pwrite/writev (a disk failing outright).
 * - CLOCK_REALTIME (clock_gettime, gettimeofday) is shifted by `realtime_offset_ns` in the
 *   processes whose role (argv[1]: agent, controller, datanode) is `clock_role` (F9).
 *
 * The layout below is mirrored by `Control` in shim.rs. Rust's std calls these libc symbols
 * (File::sync_all is fsync, sync_data fdatasync, SystemTime::now clock_gettime), so
 * interposing them reaches the nodes' own calls.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

struct control {
    int64_t realtime_offset_ns;
    uint32_t fail_sync;
    uint32_t fail_write;
    char clock_role[32];
    char eio_prefix[976];
};

_Static_assert(sizeof(struct control) == 1024, "the layout shim.rs writes");

static volatile const struct control *ctl;
static char role[32];
static int (*real_clock_gettime)(clockid_t, struct timespec *);

__attribute__((constructor)) static void faultfs_init(void) {
    real_clock_gettime = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    /* argv[1] is the role: the second NUL-terminated string of the command line. */
    int cmd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (cmd >= 0) {
        char buf[256];
        ssize_t n = read(cmd, buf, sizeof buf - 1);
        close(cmd);
        if (n > 0) {
            buf[n] = 0;
            size_t first = strlen(buf);
            if ((ssize_t)first + 1 < n)
                snprintf(role, sizeof role, "%s", buf + first + 1);
        }
    }
    const char *path = getenv("SHOAL_CHAOS_CONTROL");
    if (!path)
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    void *m = mmap(NULL, sizeof(struct control), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m != MAP_FAILED)
        ctl = m;
}

/* Is `fd` a file under the armed prefix? (Only asked once a fault is armed: a readlink per
 * call is no cost then, and none otherwise.) */
static int under_prefix(int fd) {
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0)
        return 0;
    target[n] = 0;
    char prefix[sizeof ctl->eio_prefix];
    memcpy(prefix, (const char *)ctl->eio_prefix, sizeof prefix);
    prefix[sizeof prefix - 1] = 0;
    return prefix[0] && strncmp(target, prefix, strlen(prefix)) == 0;
}

static int sync_fails(int fd) {
    return ctl && ctl->fail_sync && under_prefix(fd);
}

static int write_fails(int fd) {
    return ctl && ctl->fail_write && under_prefix(fd);
}

ssize_t write(int fd, const void *buf, size_t n) {
    if (write_fails(fd)) {
        errno = EIO;
        return -1;
    }
    return (ssize_t)syscall(SYS_write, fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    if (write_fails(fd)) {
        errno = EIO;
        return -1;
    }
    return (ssize_t)syscall(SYS_pwrite64, fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    return pwrite(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int count) {
    if (write_fails(fd)) {
        errno = EIO;
        return -1;
    }
    return (ssize_t)syscall(SYS_writev, fd, iov, count);
}

int fsync(int fd) {
    if (sync_fails(fd)) {
        errno = EIO;
        return -1;
    }
    return (int)syscall(SYS_fsync, fd);
}

int fdatasync(int fd) {
    if (sync_fails(fd)) {
        errno = EIO;
        return -1;
    }
    return (int)syscall(SYS_fdatasync, fd);
}

static int64_t realtime_offset(void) {
    if (!ctl)
        return 0;
    int64_t off = ctl->realtime_offset_ns;
    if (off == 0 || strncmp(role, (const char *)ctl->clock_role, sizeof role) != 0)
        return 0;
    return off;
}

static void shift(struct timespec *ts, int64_t off) {
    int64_t ns = (int64_t)ts->tv_nsec + off % 1000000000;
    ts->tv_sec += off / 1000000000 + ns / 1000000000;
    ns %= 1000000000;
    if (ns < 0) {
        ns += 1000000000;
        ts->tv_sec -= 1;
    }
    ts->tv_nsec = ns;
}

int clock_gettime(clockid_t clk, struct timespec *ts) {
    int r = real_clock_gettime ? real_clock_gettime(clk, ts)
                               : (int)syscall(SYS_clock_gettime, clk, ts);
    if (r == 0 && (clk == CLOCK_REALTIME || clk == CLOCK_REALTIME_COARSE)) {
        int64_t off = realtime_offset();
        if (off)
            shift(ts, off);
    }
    return r;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    int r = clock_gettime(CLOCK_REALTIME, &ts);
    if (r == 0) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    if (tz)
        memset(tz, 0, sizeof(struct timezone));
    return r;
}
