//! Users managed through the cluster: `shoal user add|passwd|role|remove|list` change the
//! controllers' replicated table and data nodes apply it without a restart (logins, tokens,
//! roles); a reader cannot manage users; bad input is refused with nothing changed; the table
//! survives a change of controller leader.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use arrow_flight::sql::client::FlightSqlServiceClient;
use tonic::transport::Channel;

use crate::data::{Data, runtime};
use crate::harness::{LocalCluster, previous_release_binary, run_shoal, shoal_bin, stderr, stdout};

/// How long a change may take to reach every data node (their heartbeats bring it).
const PROPAGATION: Duration = Duration::from_secs(15);

/// `shoal user ARGS --dir DIR`, with `stdin` as standard input (a password).
pub fn user(cluster: &LocalCluster, args: &[&str], stdin: &str) -> Output {
    let mut command = Command::new(shoal_bin());
    command
        .arg("user")
        .args(args)
        .args(["--dir", cluster.dir_str()]);
    with_stdin(command, &cluster.dir, stdin)
}

/// Runs `command` with `stdin` (one line, through a file in `dir`) as its standard input.
fn with_stdin(mut command: Command, dir: &Path, stdin: &str) -> Output {
    let input = dir.join("stdin.txt");
    std::fs::write(&input, format!("{stdin}\n")).unwrap();
    command.stdin(std::fs::File::open(&input).unwrap());
    run_shoal(command)
}

pub fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}{}", stdout(out), stderr(out));
    stdout(out)
}

pub fn refused(out: &Output) -> String {
    assert!(!out.status.success(), "accepted: {}", stdout(out));
    stderr(out)
}

fn users_json(cluster: &LocalCluster) -> serde_json::Value {
    serde_json::from_str(&ok(&user(cluster, &["list", "--json"], ""))).unwrap()
}

/// Every data node, as a Flight SQL client.
fn flight(data: &Data) -> Vec<FlightSqlServiceClient<Channel>> {
    data.datanodes
        .values()
        .map(|addr| {
            let channel = Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect_lazy();
            FlightSqlServiceClient::new(channel)
        })
        .collect()
}

/// Logs in on a copy of `client` (one holding no token: the handshake would send it instead of
/// the password): the token, or the refusal's text.
async fn login(
    client: &FlightSqlServiceClient<Channel>,
    name: &str,
    password: &str,
) -> Result<String, String> {
    client
        .clone()
        .handshake(name, password)
        .await
        .map(|t| String::from_utf8(t.to_vec()).unwrap())
        .map_err(|e| e.to_string())
}

/// Runs `sql` with `token` on `client`: Ok, or the refusal's text.
async fn run_as(
    client: &FlightSqlServiceClient<Channel>,
    token: &str,
    sql: &str,
) -> Result<(), String> {
    let mut client = client.clone();
    client.set_token(token.to_owned());
    client
        .execute(sql.to_owned(), None)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Polls until `check` holds on every data node, or panics after [`PROPAGATION`] naming `what`.
async fn on_every_node<F, Fut>(data: &Data, what: &str, check: F)
where
    F: Fn(FlightSqlServiceClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    for client in flight(data) {
        eventually(what, || check(client.clone())).await;
    }
}

fn expect(r: Result<String, String>, wanted: bool, what: &str) -> Result<(), String> {
    match (r, wanted) {
        (Ok(_), true) | (Err(_), false) => Ok(()),
        (Ok(_), false) => Err(format!("{what}: accepted")),
        (Err(e), true) => Err(format!("{what}: {e}")),
    }
}

fn write_password(dir: &Path, name: &str, password: &str) -> String {
    let path = dir.join(format!("{name}.password"));
    std::fs::write(&path, format!("{password}\n")).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn users_added_changed_and_removed_through_the_cluster_apply_without_restarts() {
    let cluster = LocalCluster::start();
    let data = Data::connect(&cluster);
    let rt = runtime();
    let names = |v: &serde_json::Value| -> Vec<(String, String)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|u| {
                (
                    u["name"].as_str().unwrap().to_owned(),
                    u["role"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    // Seeded from cluster.users: the generated admin.
    assert_eq!(
        names(&users_json(&cluster)),
        vec![("admin".into(), "admin".into())]
    );

    ok(&user(
        &cluster,
        &["add", "app", "--role", "writer"],
        "app-password-1",
    ));
    ok(&user(
        &cluster,
        &["add", "viewer", "--role", "reader"],
        "viewer-password",
    ));
    let table = ok(&user(&cluster, &["list"], ""));
    assert!(table.contains("app") && table.contains("writer"), "{table}");

    rt.block_on(async {
        // Every data node lets the new user in, without a restart.
        on_every_node(&data, "app logs in", |c| async move {
            let token = login(&c, "app", "app-password-1").await?;
            run_as(&c, &token, "SELECT 1").await
        })
        .await;
        let first = flight(&data).remove(0);
        let old_token = login(&first, "app", "app-password-1").await.unwrap();

        // A reader cannot manage users (and its attempt changes nothing).
        let before = users_json(&cluster);
        let viewer_pw = write_password(&cluster.dir, "viewer", "viewer-password");
        let err = refused(&user(
            &cluster,
            &[
                "add",
                "intruder",
                "--role",
                "admin",
                "--login",
                "viewer",
                "--login-password-file",
                &viewer_pw,
            ],
            "intruder-password",
        ));
        assert!(
            err.contains("user `viewer` has role reader; this needs admin"),
            "{err}"
        );
        let wrong_pw = write_password(&cluster.dir, "wrong", "not-the-password");
        let err = refused(&user(
            &cluster,
            &[
                "list",
                "--login",
                "viewer",
                "--login-password-file",
                &wrong_pw,
            ],
            "",
        ));
        assert!(err.contains("wrong user or password"), "{err}");

        // Bad input: refused naming the problem, nothing changed.
        for (args, stdin, why) in [
            (
                &["add", "x", "--role", "root"][..],
                "long-enough-1",
                "unknown role `root`",
            ),
            (
                &["add", "x", "--role", "reader"][..],
                "short",
                "at least 8 characters",
            ),
            (
                &["add", "bad-name", "--role", "reader"][..],
                "long-enough-1",
                "bad user name",
            ),
            (
                &["add", "app", "--role", "reader"][..],
                "long-enough-1",
                "user `app` exists already",
            ),
            (&["remove", "admin"][..], "", "`admin` is the last admin"),
            (
                &["role", "admin", "writer"][..],
                "",
                "`admin` is the last admin",
            ),
            (&["remove", "ghost"][..], "", "no user `ghost`"),
            (&["passwd", "ghost"][..], "long-enough-1", "no user `ghost`"),
        ] {
            let err = refused(&user(&cluster, args, stdin));
            assert!(err.contains(why), "{args:?}: {err}");
        }
        assert_eq!(users_json(&cluster), before);

        // A new password: the old one and the sessions issued with it end everywhere.
        ok(&user(&cluster, &["passwd", "app"], "app-password-2"));
        on_every_node(&data, "the old password refused", |c| async move {
            expect(
                login(&c, "app", "app-password-1").await,
                false,
                "old password",
            )
        })
        .await;
        let err = run_as(&first, &old_token, "SELECT 1").await.unwrap_err();
        assert!(err.contains("log in again"), "{err}");
        let new_token = login(&first, "app", "app-password-2").await.unwrap();
        run_as(&first, &new_token, "SELECT 1").await.unwrap();

        // A role change applies to the token already held.
        let ddl = r#"CREATE DATABASE "dfs://apps" PARTITIONED BY VALUE(1..3)"#;
        let err = run_as(&first, &new_token, ddl).await.unwrap_err();
        assert!(err.contains("needs admin"), "{err}");
        ok(&user(&cluster, &["role", "app", "admin"], ""));
        let t = new_token.clone();
        on_every_node(&data, "app's token is admin", |c| {
            let t = t.clone();
            async move {
                match run_as(&c, &t, ddl).await {
                    Err(e) if e.contains("needs admin") => Err(e),
                    _ => Ok(()), // created, or created by another node's turn already
                }
            }
        })
        .await;

        // Another controller leads: the users are still there, and still manage users.
        let leader = data.controllers.transfer_leadership("").await.unwrap();
        eprintln!("leadership moved to {leader}");
        let after = users_json(&cluster);
        assert_eq!(
            names(&after),
            vec![
                ("admin".into(), "admin".into()),
                ("app".into(), "admin".into()),
                ("viewer".into(), "reader".into())
            ]
        );
        let app_pw = write_password(&cluster.dir, "app", "app-password-2");
        ok(&user(
            &cluster,
            &[
                "remove",
                "viewer",
                "--login",
                "app",
                "--login-password-file",
                &app_pw,
            ],
            "",
        ));

        // Removed: its token and its password stop working.
        ok(&user(&cluster, &["remove", "app"], ""));
        let t = new_token.clone();
        on_every_node(&data, "app's token refused", |c| {
            let t = t.clone();
            async move {
                expect(
                    run_as(&c, &t, "SELECT 1").await.map(|()| String::new()),
                    false,
                    "token",
                )
            }
        })
        .await;
        let err = login(&first, "app", "app-password-2").await.unwrap_err();
        assert!(err.contains("wrong user or password"), "{err}");
        assert_eq!(
            names(&users_json(&cluster)),
            vec![("admin".into(), "admin".into())]
        );
    });
}

/// Restarts the whole local cluster with `secrets` as every machine's (and the CLI's)
/// `cluster.secret`.
fn restart_with_secrets(cluster: &LocalCluster, secrets: &str) {
    ok(&cluster.run(&["local", "down"]));
    let mut files = vec![cluster.dir.join("cluster.secret")];
    files.extend(
        cluster
            .hosts
            .iter()
            .map(|h| cluster.dir.join(h).join("cluster.secret")),
    );
    for file in files {
        std::fs::write(file, secrets).unwrap();
    }
    ok(&cluster.run(&["local", "up", "--timeout", "60s"]));
}

/// Polls `call` until it answers Ok (a data node that just started learns the users from its
/// first heartbeat answer).
async fn eventually<F, Fut, T>(what: &str, call: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let until = Instant::now() + PROPAGATION;
    loop {
        match call().await {
            Ok(v) => return v,
            Err(last) if Instant::now() > until => panic!("{what}: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[test]
fn the_cluster_secret_is_rotated_without_logging_anyone_out() {
    use shoal_common::secret::key_id;
    let cluster = LocalCluster::start();
    ok(&user(
        &cluster,
        &["add", "app", "--role", "reader"],
        "app-password-1",
    ));
    let old = std::fs::read_to_string(cluster.dir.join("cluster.secret")).unwrap();
    let old = old.trim().to_owned();
    let new = "rotated-secret-0123456789abcdef";
    let rt = runtime();
    let first = || flight(&Data::connect(&cluster)).remove(0);
    let old_token = rt.block_on(async {
        let c = first();
        eventually("app logs in", || login(&c, "app", "app-password-1")).await
    });
    assert!(
        old_token.contains(&format!(".{}.", key_id(&old))),
        "{old_token}"
    );

    // The new secret added and made the one that signs and is sent (one restart here; on real
    // machines two rolling ones): the cluster runs on it, the old token still works.
    restart_with_secrets(&cluster, &format!("{new}\n{old}\n"));
    let new_token = rt.block_on(async {
        let c = first();
        eventually("the old token still works", || {
            run_as(&c, &old_token, "SELECT 1")
        })
        .await;
        login(&c, "app", "app-password-1").await.unwrap()
    });
    assert!(
        new_token.contains(&format!(".{}.", key_id(new))),
        "{new_token}"
    );
    assert!(cluster.status()["nodes"].as_array().is_some());

    // The old secret removed: what it signed is refused, what the new one signed is not.
    restart_with_secrets(&cluster, new);
    rt.block_on(async {
        let c = first();
        eventually("the new token works", || run_as(&c, &new_token, "SELECT 1")).await;
        let err = run_as(&c, &old_token, "SELECT 1").await.unwrap_err();
        assert!(err.contains("log in again"), "{err}");
    });
}

#[test]
fn user_add_with_a_file_writes_a_pbkdf2_line_and_refuses_duplicates_and_short_passwords() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("cluster.users");
    let file = file.to_str().unwrap();
    let add_with = |binary: &Path, name: &str, password: &str| {
        let mut command = Command::new(binary);
        command.args(["user", "add", name, "--role", "writer", "--file", file]);
        with_stdin(command, tmp.path(), password)
    };
    let add = |name: &str, password: &str| add_with(Path::new(shoal_bin()), name, password);
    ok(&add("app", "app-password-1"));
    // The form the previous release reads: it takes the iteration count from the line.
    let text = std::fs::read_to_string(file).unwrap();
    assert!(
        text.starts_with("app:writer:pbkdf2-sha256$600000$"),
        "{text}"
    );
    let err = refused(&add("app", "app-password-2"));
    assert!(err.contains("user `app` exists already"), "{err}");
    let err = refused(&add("other", "short"));
    assert!(err.contains("at least 8 characters"), "{err}");
    assert_eq!(std::fs::read_to_string(file).unwrap(), text);
    // The previous release reads the file (it parses every line before adding one).
    ok(&add_with(&previous_release_binary(), "old", "old-password"));
    let mut both = Command::new(shoal_bin());
    both.args([
        "user", "add", "x", "--role", "reader", "--file", file, "--dir", "/tmp",
    ]);
    let err = refused(&run_shoal(both));
    assert!(err.contains("cannot be used with"), "{err}");
}
