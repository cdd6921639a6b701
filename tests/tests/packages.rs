//! The Debian packages and `deploy/install-agent.sh`, checked without
//! installing anything on this machine.
//!
//! Both packages are built by `deploy/debian/build-deb.sh` from the binaries
//! this test run already has (never a second, release build), uncompressed to
//! save time, then taken apart: control fields, file list, owners and modes
//! (unpacked with `dpkg-deb -x`), conffiles, md5sums, maintainer scripts
//! (`sh -n`, shellcheck, and a run of postinst against stand-in `getent`,
//! `adduser` and `systemctl`), the glibc the binaries need against the
//! declared dependency, the shipped units (`systemd-analyze verify`), and
//! lintian.
//! install-agent.sh is run only where it must refuse (bad arguments, an
//! unsupported system faked with a stand-in `uname` or `id`) or with
//! `--dry-run`. As root, `tests/packaging/isolated-install.sh` installs both
//! packages for real in a copy-on-write overlay of this machine's root, in
//! its own mount and network namespaces, sets the collector up as
//! docs/packaging.md says, runs both programs as their service users, then
//! upgrades, removes and purges: the machine itself is never changed.
//!
//! Tools that may be missing (dpkg-deb, shellcheck, systemd-analyze,
//! objdump, lintian), and root and overlayfs for the isolated install: the check says why and passes as skipped, unless
//! `STEWARD_REQUIRE_PRIVILEGED_TESTS=1` (set by `.ci/run`, which installs
//! them), which turns the skip into a failure.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FINGERPRINT: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const COLLECTOR_URL: &str = "https://collector.example.net:7443";

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// `name` on PATH, or `None` after saying the check is skipped (a failure
/// when CI requires every check).
fn tool(name: &str, check: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("STEWARD_REQUIRE_PRIVILEGED_TESTS").is_err(),
            "{name} is not installed but STEWARD_REQUIRE_PRIVILEGED_TESTS is set ({check})"
        );
        steward_tests::skipped(check, &format!("{name} is not installed"));
    }
    found
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `command` and returns its stdout; fails with its stderr otherwise.
fn succeed(command: &mut Command) -> String {
    let output = run(command);
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Builds one package into `out` and returns its path.
fn build(package: &str, out: &Path) -> PathBuf {
    let bin_dir = steward_tests::binary(package)
        .parent()
        .unwrap()
        .to_path_buf();
    let printed = succeed(
        Command::new(deploy().join("debian/build-deb.sh"))
            .arg("--bin-dir")
            .arg(&bin_dir)
            .arg("--out-dir")
            .arg(out)
            .args(["--compression", "none", package]),
    );
    let deb = PathBuf::from(printed.trim());
    assert_eq!(
        deb.file_name().unwrap().to_str().unwrap(),
        format!(
            "{package}_{}_{}.deb",
            env!("CARGO_PKG_VERSION"),
            field(&deb, "Architecture")
        )
    );
    deb
}

fn field(deb: &Path, name: &str) -> String {
    succeed(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name))
        .trim()
        .to_string()
}

struct Expected {
    package: &'static str,
    user: &'static str,
    conffiles: &'static [&'static str],
    /// Binaries shipped beside the package's own.
    companions: &'static [&'static str],
}

const AGENT: Expected = Expected {
    package: "steward-agent",
    user: "steward-agent",
    conffiles: &["/etc/steward/agent.toml.example"],
    companions: &[],
};

const COLLECTOR: Expected = Expected {
    package: "steward-collector",
    user: "steward",
    conffiles: &[
        "/etc/steward/collector.toml.example",
        "/etc/steward/collector-full.toml.example",
        "/etc/steward/default-rules.toml.example",
    ],
    companions: &["stewardctl"],
};

#[test]
fn agent_package_contents_scripts_and_unit() {
    check_package(&AGENT);
}

#[test]
fn collector_package_contents_scripts_and_unit() {
    check_package(&COLLECTOR);
}

fn check_package(expected: &Expected) {
    if tool("dpkg-deb", "building the Debian packages").is_none() {
        return;
    }
    let package = expected.package;
    let dir = tempfile::tempdir().unwrap();
    let deb = build(package, dir.path());

    // Control fields.
    assert_eq!(field(&deb, "Package"), package);
    assert_eq!(field(&deb, "Version"), env!("CARGO_PKG_VERSION"));
    let depends = field(&deb, "Depends");
    assert!(depends.contains("adduser"), "{depends}");
    assert!(field(&deb, "Installed-Size").parse::<u64>().unwrap() > 1000);

    // Every file, owned by root, with the modes dpkg will install.
    let listing = succeed(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    let mut files: Vec<(String, String)> = listing
        .lines()
        .filter(|line| line.starts_with('-'))
        .map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(columns[1], "root/root", "{line}");
            (
                columns[5].trim_start_matches('.').to_string(),
                columns[0].to_string(),
            )
        })
        .collect();
    files.sort();
    let mut wanted: Vec<(String, String)> = [
        (format!("/usr/bin/{package}"), "-rwxr-xr-x"),
        (
            format!("/lib/systemd/system/{package}.service"),
            "-rw-r--r--",
        ),
        (format!("/usr/share/doc/{package}/copyright"), "-rw-r--r--"),
        (
            format!("/usr/share/doc/{package}/changelog.gz"),
            "-rw-r--r--",
        ),
        (
            format!("/usr/share/lintian/overrides/{package}"),
            "-rw-r--r--",
        ),
    ]
    .into_iter()
    .chain(
        expected
            .conffiles
            .iter()
            .map(|path| (path.to_string(), "-rw-r--r--")),
    )
    .chain(
        expected
            .companions
            .iter()
            .map(|name| (format!("/usr/bin/{name}"), "-rwxr-xr-x")),
    )
    .map(|(path, mode)| (path, mode.to_string()))
    .collect();
    wanted.sort();
    assert_eq!(files, wanted, "files in {package}");

    // Unpacked: the binary is the one built, md5sums match, modes hold.
    let root = dir.path().join("root");
    succeed(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let binary = root.join("usr/bin").join(package);
    assert_eq!(
        std::fs::read(&binary).unwrap(),
        std::fs::read(steward_tests::binary(package)).unwrap(),
        "the packaged binary is the one built"
    );
    assert_eq!(mode(&binary), 0o755);
    for companion in expected.companions {
        assert_eq!(
            std::fs::read(root.join("usr/bin").join(companion)).unwrap(),
            std::fs::read(steward_tests::binary(companion)).unwrap(),
            "the packaged {companion} is the one built"
        );
    }
    assert_eq!(
        succeed(Command::new(&binary).arg("--version")).trim(),
        format!("{package} {}", env!("CARGO_PKG_VERSION")),
        "the package's version is the binary's"
    );
    for conffile in expected.conffiles {
        let example = root.join(conffile.trim_start_matches('/'));
        assert_eq!(mode(&example), 0o644);
        let source = conffile
            .trim_start_matches("/etc/steward/")
            .trim_end_matches(".example");
        assert_eq!(
            std::fs::read_to_string(&example).unwrap(),
            std::fs::read_to_string(deploy().join(source)).unwrap()
        );
    }

    // Control archive: conffiles, md5sums, maintainer scripts.
    let control = dir.path().join("control");
    succeed(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert_eq!(conffiles.lines().collect::<Vec<_>>(), expected.conffiles);
    succeed(
        Command::new("md5sum")
            .args(["--check", "--quiet"])
            .arg(control.join("md5sums"))
            .current_dir(&root),
    );
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.join(script);
        assert_eq!(mode(&path), 0o755, "{script}");
        succeed(Command::new("sh").arg("-n").arg(&path));
    }
    // The stand-ins below see systemctl only where systemd runs; the text
    // holds on every machine.
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    for line in postinst
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
    {
        assert!(
            !line.contains("enable") && !line.contains(" start"),
            "postinst must not enable or start the service before it is configured: {line}"
        );
    }
    postinst_creates_the_user_once(&control.join("postinst"), expected.user, dir.path());

    // The unit as shipped.
    let unit = std::fs::read_to_string(root.join(format!("lib/systemd/system/{package}.service")))
        .unwrap();
    for line in [
        format!("User={}", expected.user),
        "NoNewPrivileges=yes".to_string(),
        "ProtectSystem=strict".to_string(),
        format!("ExecStart=/usr/bin/{package} --config /etc/steward/"),
    ] {
        assert!(unit.contains(&line), "{package}.service lacks {line}");
    }
    assert!(unit.contains("ConditionPathExists=/etc/steward/"));
    let capabilities = if package == "steward-agent" {
        "CAP_NET_RAW"
    } else {
        ""
    };
    assert!(unit.contains(&format!("\nCapabilityBoundingSet={capabilities}\n")));
    assert!(unit.contains(&format!("\nAmbientCapabilities={capabilities}\n")));
    verify_unit(package, &unit, &binary, dir.path());
    lintian(&deb);
    binaries_need_no_newer_glibc_than_declared(&binary, &depends);
    if package == "steward-agent" {
        install_agent_dry_run_with_the_package(&deb);
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// `systemd-analyze verify` on the shipped unit, its ExecStart pointed at
/// the unpacked binary (verify checks that the program exists).
fn verify_unit(package: &str, unit: &str, binary: &Path, dir: &Path) {
    let Some(analyze) = tool("systemd-analyze", "verifying the systemd units") else {
        return;
    };
    let units = dir.join("units");
    std::fs::create_dir_all(&units).unwrap();
    let path = units.join(format!("{package}.service"));
    let shipped = format!("/usr/bin/{package} ");
    assert!(unit.contains(&shipped));
    std::fs::write(
        &path,
        unit.replace(&shipped, &format!("{} ", binary.display())),
    )
    .unwrap();
    let output = run(Command::new(analyze).arg("verify").arg(&path));
    let stderr = text(&output.stderr);
    assert!(
        output.status.success() && !stderr.contains(&format!("{package}.service")),
        "systemd-analyze verify {package}.service:\n{stderr}"
    );
}

/// lintian finds no error and no warning, but those of a test build: debug
/// binaries (unstripped) in an uncompressed package.
fn lintian(deb: &Path) {
    let Some(lintian) = tool("lintian", "linting the packages") else {
        return;
    };
    succeed(
        Command::new(lintian)
            .args(["--fail-on", "error,warning", "--suppress-tags"])
            .arg(
                "unstripped-binary-or-object,uses-no-compression-for-control-tarball,\
                 uses-no-compression-for-data-tarball",
            )
            .arg(deb),
    );
}

/// Every `GLIBC_x.y` symbol version the binary needs is at most the one in
/// the package's `libc6 (>= x.y)` dependency.
fn binaries_need_no_newer_glibc_than_declared(binary: &Path, depends: &str) {
    let Some(objdump) = tool("objdump", "checking the glibc dependency") else {
        return;
    };
    let declared = depends
        .split(',')
        .map(str::trim)
        .find_map(|dependency| dependency.strip_prefix("libc6 (>= "))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no libc6 (>= x.y) in Depends: {depends}"));
    let version = |text: &str| -> Vec<u32> {
        text.split('.')
            .map(|part| part.parse().unwrap_or(0))
            .collect()
    };
    let symbols = succeed(Command::new(objdump).arg("-T").arg(binary));
    let needed = symbols
        .split_whitespace()
        // `(GLIBC_2.34)` in the version column.
        .filter_map(|word| word.trim_matches(['(', ')']).strip_prefix("GLIBC_"))
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        .max_by_key(|rest| version(rest))
        .unwrap();
    assert!(
        version(needed) <= version(declared),
        "{} needs GLIBC_{needed} but the package declares libc6 (>= {declared})",
        binary.display()
    );
}

/// A directory of stand-in commands: each logs its arguments to `log` and
/// exits with the status given.
fn stand_ins(dir: &Path, commands: &[(&str, &str)], log: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, body) in commands {
        let path = bin.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{name} $*\" >>'{}'\n{body}\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

fn path_with(bin: &Path) -> String {
    format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display())
}

/// postinst `configure` against stand-ins: a first install creates the
/// system user (and starts nothing); a second finds it and creates nothing.
fn postinst_creates_the_user_once(postinst: &Path, user: &str, dir: &Path) {
    for (round, user_exists) in [("first", false), ("again", true)] {
        let log = dir.join(format!("postinst-{round}.log"));
        let bin = stand_ins(
            &dir.join(format!("postinst-{round}")),
            &[
                ("getent", if user_exists { "exit 0" } else { "exit 2" }),
                ("adduser", "exit 0"),
                ("useradd", "exit 0"),
                ("systemctl", "exit 0"),
                ("deb-systemd-helper", "exit 0"),
                ("deb-systemd-invoke", "exit 0"),
            ],
            &log,
        );
        succeed(
            Command::new("sh")
                .arg(postinst)
                .args(["configure", ""])
                .env("PATH", path_with(&bin)),
        );
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        let adduser = calls
            .lines()
            .filter(|line| line.starts_with("adduser"))
            .count();
        if user_exists {
            assert_eq!(adduser, 0, "{round}:\n{calls}");
        } else {
            assert_eq!(adduser, 1, "{round}:\n{calls}");
            assert!(
                calls.contains("--system") && calls.contains(&format!(" {user}\n")),
                "{calls}"
            );
        }
        assert!(
            !calls.contains(" start") && !calls.contains(" enable") && !calls.contains("restart"),
            "a first install starts nothing:\n{calls}"
        );
    }
}

#[test]
fn packages_install_run_upgrade_and_purge_in_an_isolated_root() {
    if tool("dpkg-deb", "the isolated install").is_none()
        || tool("unshare", "the isolated install").is_none()
    {
        return;
    }
    if effective_uid() != 0 {
        assert!(
            std::env::var("STEWARD_REQUIRE_PRIVILEGED_TESTS").is_err(),
            "the isolated install needs root but STEWARD_REQUIRE_PRIVILEGED_TESTS is set"
        );
        steward_tests::skipped("the isolated install", "it needs root (mount, chroot)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let debs = dir.path().join("debs");
    std::fs::create_dir(&debs).unwrap();
    build("steward-agent", &debs);
    build("steward-collector", &debs);
    std::fs::copy(
        deploy().join("install-agent.sh"),
        debs.join("install-agent.sh"),
    )
    .unwrap();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/isolated-install.sh");
    let output = run(Command::new("unshare")
        .args(["--mount", "--net", "--fork", "sh"])
        .arg(&script)
        .arg(&scratch)
        .arg(&debs));
    let log = format!("{}{}", text(&output.stdout), text(&output.stderr));
    if output.status.code() == Some(77) {
        assert!(
            std::env::var("STEWARD_REQUIRE_PRIVILEGED_TESTS").is_err(),
            "no overlayfs but STEWARD_REQUIRE_PRIVILEGED_TESTS is set:\n{log}"
        );
        steward_tests::skipped("the isolated install", &log);
        return;
    }
    assert!(
        output.status.success() && log.contains("isolated install: all checks passed"),
        "isolated install ({}):\n{log}",
        output.status
    );
    assert!(
        std::fs::read_dir(&scratch).unwrap().next().is_none(),
        "the overlay's writes stayed in its mount namespace"
    );
}

fn effective_uid() -> u32 {
    // `id -u` rather than libc::geteuid: the workspace denies unsafe code.
    succeed(Command::new("id").arg("-u"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn scripts_pass_shellcheck() {
    let scripts: Vec<PathBuf> = ["debian/build-deb.sh", "install-agent.sh"]
        .into_iter()
        .map(|script| deploy().join(script))
        .chain([Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/isolated-install.sh")])
        .chain(
            ["steward-agent", "steward-collector"]
                .into_iter()
                .flat_map(|package| {
                    ["postinst", "prerm", "postrm"]
                        .into_iter()
                        .map(move |script| deploy().join("debian").join(package).join(script))
                }),
        )
        .collect();
    for script in &scripts {
        let shell = if script.ends_with("install-agent.sh") {
            "bash"
        } else {
            "sh"
        };
        succeed(Command::new(shell).arg("-n").arg(script));
    }
    let Some(shellcheck) = tool("shellcheck", "linting the shell scripts") else {
        return;
    };
    succeed(Command::new(shellcheck).args(&scripts));
}

fn install_agent(args: &[&str], path: Option<&Path>) -> Output {
    let mut command = Command::new("bash");
    command.arg(deploy().join("install-agent.sh")).args(args);
    if let Some(bin) = path {
        command.env("PATH", path_with(bin));
    }
    run(&mut command)
}

fn assert_refused(output: &Output, status: i32, message: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(status), "{stderr}");
    assert!(
        stderr.contains(message),
        "expected {message:?} in:\n{stderr}"
    );
    assert!(
        text(&output.stdout).is_empty(),
        "nothing is done before refusing"
    );
}

#[test]
fn install_agent_refuses_bad_arguments_before_anything_else() {
    let all = [
        "--collector",
        COLLECTOR_URL,
        "--token",
        "T0KEN",
        "--ca-fingerprint",
        FINGERPRINT,
    ];
    let without = |option: &str| -> Vec<&str> {
        let at = all.iter().position(|arg| *arg == option).unwrap();
        [&all[..at], &all[at + 2..]].concat()
    };
    let with = |option: &str, value: &'static str| -> Vec<&str> {
        let mut args = all.to_vec();
        let at = args.iter().position(|arg| *arg == option).unwrap();
        args[at + 1] = value;
        args
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (without("--token"), "missing --token"),
        (without("--collector"), "missing --collector"),
        (without("--ca-fingerprint"), "missing --ca-fingerprint"),
        (
            with("--ca-fingerprint", "sha256:0123"),
            "--ca-fingerprint must be sha256: followed by 64 hex digits",
        ),
        (
            with("--ca-fingerprint", "md5:0123456789abcdef0123456789abcdef"),
            "--ca-fingerprint must be sha256:",
        ),
        (
            with("--collector", "http://collector.example.net:7443"),
            "--collector must be https://HOST:PORT",
        ),
        (
            with("--collector", "https://collector.example.net"),
            "--collector must be https://HOST:PORT",
        ),
        (
            with("--token", "two words"),
            "--token must not contain spaces",
        ),
        (
            [&all[..], &["--bogus"]].concat(),
            "unknown argument: --bogus",
        ),
        ([&all[..], &["--token"]].concat(), "--token needs a value"),
        (
            [&all[..], &["--token-file", "/nonexistent/token"]].concat(),
            "give --token or --token-file, not both",
        ),
        (
            [
                &without("--token")[..],
                &["--token-file", "/nonexistent/token"],
            ]
            .concat(),
            "cannot read --token-file /nonexistent/token",
        ),
        (
            [&all[..], &["--package", "a.deb", "--binary", "b"]].concat(),
            "give --package or --binary, not both",
        ),
    ];
    for (args, message) in cases {
        assert_refused(&install_agent(&args, None), 2, message);
    }
    let help = install_agent(&["--help"], None);
    assert!(help.status.success());
    assert!(text(&help.stdout).contains("--ca-fingerprint"));
}

#[test]
fn install_agent_refuses_unsupported_systems() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--collector",
        COLLECTOR_URL,
        "--token",
        "T0KEN",
        "--ca-fingerprint",
        FINGERPRINT,
    ];
    let log = dir.path().join("calls.log");

    let bin = stand_ins(
        &dir.path().join("freebsd"),
        &[("uname", "echo FreeBSD")],
        &log,
    );
    assert_refused(
        &install_agent(&args, Some(&bin)),
        3,
        "unsupported system: FreeBSD (install-agent.sh supports Linux with systemd",
    );

    // Linux, but either without systemd (then that is refused first) or
    // not as root: never gets further on any machine.
    let bin = stand_ins(
        &dir.path().join("not-root"),
        &[("uname", "echo Linux"), ("id", "echo 1000")],
        &log,
    );
    let output = install_agent(&args, Some(&bin));
    if Path::new("/run/systemd/system").is_dir() {
        assert_refused(&output, 1, "must run as root");
    } else {
        assert_refused(&output, 3, "unsupported system: systemd is not running");
    }
}

#[test]
fn install_agent_refuses_a_binary_that_does_not_run_here() {
    let dir = tempfile::tempdir().unwrap();
    // What exec reports for a binary of another architecture.
    let foreign = dir.path().join("steward-agent");
    std::fs::write(&foreign, b"\x7fELF\x02\x01\x01\x00garbage").unwrap();
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = install_agent(
        &[
            "--collector",
            COLLECTOR_URL,
            "--token",
            "T0KEN",
            "--ca-fingerprint",
            FINGERPRINT,
            "--binary",
            foreign.to_str().unwrap(),
            "--dry-run",
        ],
        None,
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("does not run here"), "{stderr}");
}

#[test]
fn install_agent_dry_run_with_a_bare_binary_prints_the_plan() {
    let binary = steward_tests::binary("steward-agent");
    let output = install_agent(
        &[
            "--collector",
            COLLECTOR_URL,
            "--token",
            "S3CRET-T0KEN",
            "--ca-fingerprint",
            FINGERPRINT,
            "--binary",
            binary.to_str().unwrap(),
            "--dry-run",
        ],
        None,
    );
    let plan = check_plan(&output, "/usr/local/bin/steward-agent");
    assert!(
        plan.contains(&format!(
            "+ install -m 0755 {} /usr/local/bin/steward-agent",
            binary.display()
        )),
        "{plan}"
    );
    assert!(
        plan.contains("+ write /etc/systemd/system/steward-agent.service"),
        "{plan}"
    );
}

fn install_agent_dry_run_with_the_package(deb: &Path) {
    let token_file = deb.with_file_name("token");
    std::fs::write(&token_file, "S3CRET-T0KEN\n").unwrap();
    let output = install_agent(
        &[
            "--collector",
            COLLECTOR_URL,
            "--token-file",
            token_file.to_str().unwrap(),
            "--ca-fingerprint",
            FINGERPRINT,
            "--package",
            deb.to_str().unwrap(),
            "--dry-run",
        ],
        None,
    );
    let plan = check_plan(&output, "/usr/bin/steward-agent");
    if !plan.contains("is already installed") {
        assert!(
            plan.contains(&format!(
                "install -y --no-install-recommends {}",
                deb.display()
            )) || plan.contains(&format!("+ dpkg -i {}", deb.display())),
            "{plan}"
        );
    }
}

/// The steps every dry run prints, whatever this machine holds; the token
/// is never shown (it travels in a file).
fn check_plan(output: &Output, agent: &str) -> String {
    let plan = text(&output.stdout);
    assert!(output.status.success(), "{plan}{}", text(&output.stderr));
    assert!(
        !plan.contains("S3CRET-T0KEN"),
        "the token is masked:\n{plan}"
    );
    if Path::new("/etc/steward/agent/agent.key").exists() {
        assert!(plan.contains("already enrolled"), "{plan}");
    } else {
        assert!(
            plan.contains(
                "+ install -d -o steward-agent -g steward-agent -m 0750 /etc/steward/agent /var/lib/steward-agent\n"
            ),
            "{plan}"
        );
        let enroll = format!(
            "+ runuser -u steward-agent -- {agent} enroll --collector {COLLECTOR_URL} --token-file "
        );
        let line = plan
            .lines()
            .find(|line| line.starts_with(&enroll))
            .unwrap_or_else(|| panic!("no {enroll:?} in:\n{plan}"));
        assert!(
            line.ends_with(&format!(
                " --ca-fingerprint {FINGERPRINT} --dir /etc/steward/agent --state-dir /var/lib/steward-agent"
            )),
            "{line}"
        );
    }
    assert!(
        plan.contains("+ systemctl enable steward-agent.service\n"),
        "{plan}"
    );
    plan
}
