//! Package-level tests: build, verify, unpack and their refusals.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::signing::public_key_path;
use crate::*;

fn fields() -> ManifestFields {
    ManifestFields {
        version: "0.2.0".to_owned(),
        build_date: "2025.06.30".to_owned(),
        min_upgrade_from: "0.1.0".to_owned(),
        wire_version: 3,
        storage_format_version: 2,
    }
}

/// A fake binary spanning several tar blocks, with a recognizable non-repeating pattern.
fn binary() -> Vec<u8> {
    (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect()
}

struct Fixture {
    dir: tempfile::TempDir,
    package: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let package = dir.path().join("shoal-0.2.0.tar");
        Fixture { dir, package }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Builds the usual package: `shoal` (executable) and `NOTICE`.
    fn build(&self, key: Option<&SigningKey>) -> Manifest {
        let bin = self.path("src-shoal");
        let notice = self.path("src-notice");
        fs::write(&bin, binary()).unwrap();
        fs::write(&notice, b"notice text\n").unwrap();
        let files = [
            ("shoal".to_owned(), bin, true),
            ("NOTICE".to_owned(), notice, false),
        ];
        build(&self.package, fields(), &files, key).unwrap()
    }

    /// Names in the directory other than the sources and the package.
    fn leftovers(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("src-") && !n.ends_with(".tar") && !n.contains(".key"))
            .collect();
        names.sort();
        names
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A manifest for hand-made packages listing `shoal` with `content`.
fn manifest_json(format: u32, content: &[u8]) -> Vec<u8> {
    let manifest = serde_json::json!({
        "format": format,
        "version": "0.2.0",
        "build_date": "2025.06.30",
        "min_upgrade_from": "0.1.0",
        "wire_version": 3,
        "storage_format_version": 2,
        "files": [{
            "name": "shoal",
            "size": content.len(),
            "sha256": sha256_hex(content),
            "executable": true,
        }],
    });
    serde_json::to_vec(&manifest).unwrap()
}

/// Writes a tar with arbitrary entry names (the tar crate's own path setter refuses the
/// hostile ones we need to test).
fn write_raw_tar(path: &Path, entries: &[(&str, &[u8])]) {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        let slot = &mut header.as_old_mut().name;
        slot[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append(&header, *data).unwrap();
    }
    fs::write(path, tar.into_inner().unwrap()).unwrap();
}

fn err_of<T: std::fmt::Debug>(result: Result<T, PackageError>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn build_verify_unpack_round_trip() {
    let fx = Fixture::new();
    let built = fx.build(None);
    assert_eq!(built.format, FORMAT);
    assert_eq!(built.files.len(), 2);
    let shoal = built.file("shoal").unwrap();
    assert_eq!(shoal.size, binary().len() as u64);
    assert_eq!(shoal.sha256, sha256_hex(&binary()));
    assert!(shoal.executable);
    assert!(
        fx.leftovers().is_empty(),
        "no .tmp left: {:?}",
        fx.leftovers()
    );

    let (read, signature) = read_manifest(&fx.package).unwrap();
    assert_eq!(read, built);
    assert!(signature.is_none());
    assert_eq!(verify(&fx.package, None).unwrap(), built);

    let dest = fx.path("release-0.2.0");
    assert_eq!(unpack(&fx.package, &dest, None).unwrap(), built);
    assert_eq!(fs::read(dest.join("shoal")).unwrap(), binary());
    assert_eq!(fs::read(dest.join("NOTICE")).unwrap(), b"notice text\n");
    let mode = |name: &str| fs::metadata(dest.join(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("shoal"), 0o755);
    assert_eq!(mode("NOTICE"), 0o644);
    let unpacked: Manifest =
        serde_json::from_slice(&fs::read(dest.join(MANIFEST_NAME)).unwrap()).unwrap();
    assert_eq!(unpacked, built);
    assert_eq!(
        fs::read_dir(&dest).unwrap().count(),
        3,
        "only the payload and the manifest"
    );

    // A second unpack to the same place is refused and leaves the first alone.
    let err = err_of(unpack(&fx.package, &dest, None));
    assert!(
        err.contains("release-0.2.0") && err.contains("already exists"),
        "{err}"
    );
    assert_eq!(fs::read(dest.join("shoal")).unwrap(), binary());
    assert_eq!(fx.leftovers(), ["release-0.2.0"]);
}

#[test]
fn flipped_byte_is_caught_and_unpack_leaves_nothing() {
    let fx = Fixture::new();
    let built = fx.build(None);
    let mut bytes = fs::read(&fx.package).unwrap();
    let payload = binary();
    let at = bytes.windows(64).position(|w| w == &payload[..64]).unwrap() + 5_000;
    bytes[at] ^= 0x01;
    fs::write(&fx.package, &bytes).unwrap();

    let mut tampered = payload.clone();
    tampered[5_000] ^= 0x01;
    let expected = &built.file("shoal").unwrap().sha256;
    let err = err_of(verify(&fx.package, None));
    assert!(err.contains("shoal-0.2.0.tar"), "{err}");
    assert!(err.contains("shoal has sha256"), "{err}");
    assert!(err.contains(expected.as_str()), "{err}");
    assert!(err.contains(&sha256_hex(&tampered)), "{err}");

    let dest = fx.path("release");
    let err = err_of(unpack(&fx.package, &dest, None));
    assert!(err.contains("sha256"), "{err}");
    assert!(!dest.exists());
    assert!(
        fx.leftovers().is_empty(),
        "temp dir removed: {:?}",
        fx.leftovers()
    );
}

#[test]
fn truncated_package_is_refused() {
    let fx = Fixture::new();
    fx.build(None);
    let full = fs::read(&fx.package).unwrap();
    // Inside the binary, inside the first header, and just before the end-of-archive marker.
    for cut in [20_000, 100, full.len() - 1024] {
        fs::write(&fx.package, &full[..cut]).unwrap();
        let err = err_of(verify(&fx.package, None));
        assert!(err.contains("damaged or truncated"), "cut at {cut}: {err}");
        let dest = fx.path("release");
        assert!(unpack(&fx.package, &dest, None).is_err());
        assert!(!dest.exists());
        assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
    }
    fs::write(&fx.package, &full[..20_000]).unwrap();
    let err = err_of(verify(&fx.package, None));
    assert!(err.contains("shoal ends after"), "{err}");
}

#[test]
fn missing_and_extra_entries_are_refused() {
    let fx = Fixture::new();
    let content = binary();
    let manifest = manifest_json(FORMAT, &content);

    write_raw_tar(&fx.package, &[(MANIFEST_NAME, &manifest)]);
    let err = err_of(verify(&fx.package, None));
    assert!(
        err.contains("shoal is listed in the manifest but missing"),
        "{err}"
    );

    write_raw_tar(
        &fx.package,
        &[
            (MANIFEST_NAME, &manifest),
            ("shoal", &content),
            ("extra", b"x"),
        ],
    );
    let err = err_of(verify(&fx.package, None));
    assert!(err.contains("unexpected entry \"extra\""), "{err}");
    let dest = fx.path("release");
    assert!(unpack(&fx.package, &dest, None).is_err());
    assert!(!dest.exists());
    assert!(fx.leftovers().is_empty());

    write_raw_tar(
        &fx.package,
        &[
            (MANIFEST_NAME, &manifest),
            ("shoal", &content),
            ("shoal", &content),
        ],
    );
    let err = err_of(verify(&fx.package, None));
    assert!(err.contains("\"shoal\" appears more than once"), "{err}");

    write_raw_tar(
        &fx.package,
        &[("shoal", &content), (MANIFEST_NAME, &manifest)],
    );
    let err = err_of(verify(&fx.package, None));
    assert!(err.contains("first entry is \"shoal\""), "{err}");

    // The hand-made package with exactly the listed entries is fine.
    write_raw_tar(
        &fx.package,
        &[(MANIFEST_NAME, &manifest), ("shoal", &content)],
    );
    verify(&fx.package, None).unwrap();
}

#[test]
fn unknown_format_is_refused_by_name() {
    let fx = Fixture::new();
    let content = binary();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&manifest_json(2, &content)).unwrap();
    // A future format may change fields; the format is still what is reported.
    manifest["files"] = serde_json::json!("elsewhere");
    let manifest = serde_json::to_vec(&manifest).unwrap();
    write_raw_tar(
        &fx.package,
        &[(MANIFEST_NAME, &manifest), ("shoal", &content)],
    );
    for err in [
        err_of(verify(&fx.package, None)),
        err_of(read_manifest(&fx.package)),
    ] {
        assert!(
            err.contains("has format 2") && err.contains("shoal-0.2.0.tar"),
            "{err}"
        );
    }
}

#[test]
fn signatures() {
    let fx = Fixture::new();
    let key_path = fx.path("release.key");
    let public = generate_key(&key_path).unwrap();
    let key = load_signing_key(&key_path).unwrap();
    assert_eq!(
        load_verifying_key(&public_key_path(&key_path)).unwrap(),
        public
    );

    fx.build(Some(&key));
    verify(&fx.package, Some(&public)).unwrap();
    verify(&fx.package, None).unwrap();
    let (_, signature) = read_manifest(&fx.package).unwrap();
    assert!(signature.is_some());
    let dest = fx.path("release");
    unpack(&fx.package, &dest, Some(&public)).unwrap();

    let other = generate_key(&fx.path("other.key")).unwrap();
    let err = err_of(verify(&fx.package, Some(&other)));
    assert!(
        err.contains("signature does not match") && err.contains("shoal-0.2.0.tar"),
        "{err}"
    );
    let dest2 = fx.path("release2");
    assert!(unpack(&fx.package, &dest2, Some(&other)).is_err());
    assert!(!dest2.exists());

    fx.build(None);
    let err = err_of(verify(&fx.package, Some(&public)));
    assert!(
        err.contains("is not signed but a verify key is configured"),
        "{err}"
    );
    assert!(unpack(&fx.package, &dest2, Some(&public)).is_err());
    assert!(!dest2.exists());
    assert_eq!(fx.leftovers(), ["release"]);
}

#[test]
fn tampered_manifest_fails_the_signature() {
    let fx = Fixture::new();
    let key_path = fx.path("release.key");
    let public = generate_key(&key_path).unwrap();
    fx.build(Some(&load_signing_key(&key_path).unwrap()));

    // Lower min_upgrade_from to 0.0.0: same length, so the tar layout stays valid, and tar
    // checksums cover headers only, so only the signature can notice.
    let mut bytes = fs::read(&fx.package).unwrap();
    let needle = b"\"min_upgrade_from\": \"0.1.0\"";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    bytes[at + needle.len() - 4] = b'0';
    fs::write(&fx.package, &bytes).unwrap();
    assert_eq!(verify(&fx.package, None).unwrap().min_upgrade_from, "0.0.0");
    let err = err_of(verify(&fx.package, Some(&public)));
    assert!(err.contains("signature does not match"), "{err}");
}

#[test]
fn unsafe_entry_names_are_refused() {
    let fx = Fixture::new();
    let content = binary();
    let manifest = manifest_json(FORMAT, &content);
    for name in ["../evil", "/etc/evil", "sub/evil", "..", "."] {
        write_raw_tar(
            &fx.package,
            &[
                (MANIFEST_NAME, &manifest),
                (name, b"pwned"),
                ("shoal", &content),
            ],
        );
        let err = err_of(verify(&fx.package, None));
        assert!(
            err.contains("unsafe name") && err.contains(name),
            "{name}: {err}"
        );
        let dest = fx.path("release");
        assert!(unpack(&fx.package, &dest, None).is_err());
        assert!(!dest.exists());
        assert!(!fx.dir.path().parent().unwrap().join("evil").exists());
        assert!(fx.leftovers().is_empty());
    }

    // A manifest naming an unsafe file is refused before any entry is read.
    let manifest = String::from_utf8(manifest)
        .unwrap()
        .replace("\"shoal\"", "\"../shoal\"");
    write_raw_tar(&fx.package, &[(MANIFEST_NAME, manifest.as_bytes())]);
    let err = err_of(verify(&fx.package, None));
    assert!(err.contains("\"../shoal\" has an unsafe name"), "{err}");
}

#[test]
fn failed_build_leaves_nothing() {
    let fx = Fixture::new();
    let files = [("shoal".to_owned(), fx.path("src-missing"), true)];
    let err = err_of(build(&fx.package, fields(), &files, None));
    assert!(err.contains("src-missing"), "{err}");
    assert!(!fx.package.exists());
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());

    fs::write(fx.path("src-shoal"), b"bin").unwrap();
    let files = [("shoal".to_owned(), fx.path("src-shoal"), true)];
    let mut bad = fields();
    bad.version = "0.2".to_owned();
    assert!(err_of(build(&fx.package, bad, &files, None)).contains("\"0.2\""));
    let mut bad = fields();
    bad.min_upgrade_from = "0.3.0".to_owned();
    assert!(err_of(build(&fx.package, bad, &files, None)).contains("newer than"));
    let mut bad = fields();
    bad.build_date = "2025-06-30".to_owned();
    assert!(err_of(build(&fx.package, bad, &files, None)).contains("YYYY.MM.DD"));
    let files = [("../shoal".to_owned(), fx.path("src-shoal"), true)];
    assert!(err_of(build(&fx.package, fields(), &files, None)).contains("unsafe name"));
    let files = [(MANIFEST_NAME.to_owned(), fx.path("src-shoal"), true)];
    assert!(err_of(build(&fx.package, fields(), &files, None)).contains("reserved"));
    assert!(!fx.package.exists());
    assert!(fx.leftovers().is_empty());
}
