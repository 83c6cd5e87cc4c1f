//! Command-line definitions (clap). Libraries take plain structs; flags stay here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::VERSION_LINE;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "shoal", version = VERSION_LINE, about = "A replicated, partitioned time-series database you can upgrade while it runs")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a controller (reads controller.cfg, cluster.nodes and cluster.secret in --home).
    Controller(RoleArgs),
    /// Run a machine's agent (reads agent.cfg, cluster.nodes and cluster.secret in --home).
    Agent(AgentArgs),
    /// Run a data node (reads cluster.cfg, cluster.nodes and cluster.secret in --home).
    Datanode(DataNodeArgs),
    /// A whole cluster on this machine, on 127.0.0.1-3.
    #[command(subcommand)]
    Local(LocalCommand),
    /// Every node: alias, mode, machine, address, state, version, build date, Raft role.
    Status(StatusArgs),
    /// Stop or start every node of one machine through its agent.
    #[command(subcommand)]
    Host(HostCommand),
    /// Configuration as the nodes run it.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run SQL or a DolphinDB script. DDL (CREATE/DROP DATABASE/TABLE, SHOW DATABASES/TABLES
    /// in DolphinDB's dialect) goes to the controller leader; queries go to a data node's
    /// Flight SQL service (tables as `"dfs://db".table`, system tables in `cluster`: nodes,
    /// chunks, config); so do scripts (`pnodeRun(version)`, `db = database(...)`: see the
    /// README's "DolphinDB script").
    Sql(SqlArgs),
    /// Run a DolphinDB script file (several statements sharing variables); `shoal sql -f FILE`.
    Script(ScriptArgs),
    /// Every chunk with its state, replicas, rows and replica checksums (cluster.chunks).
    Chunks(ChunksArgs),
    /// The seed's writer: appends rows (time = now, name, id = 1, 2, 3, ...) at a steady rate,
    /// failing over between data nodes, and reports every append's outcome and latency.
    Write(WriteArgs),
    /// Users who may log in (Flight SQL, appends).
    #[command(subcommand)]
    User(UserCommand),
    /// TLS certificates for real hosts: a CA, one per machine, one for clients.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Checks a table the writer filled: ids exactly 1..N once each, the latest time current,
    /// and, with the writer's --record, every acknowledged id present exactly once.
    Verify(VerifyArgs),
    /// Release packages: build one from a binary, make a signing key, inspect one.
    #[command(subcommand)]
    Package(PackageCommand),
    /// Rolling upgrade of the running cluster to a package's version, one machine at a time,
    /// while clients keep writing; resumable, pausable, reversible until finalized.
    Upgrade(UpgradeArgs),
    /// The fault tier (root): a cluster in network namespaces under writers, readers and
    /// nemeses, its history judged by a Jepsen-style checker; `check` judges a history.
    #[command(subcommand)]
    Chaos(ChaosCommand),
    /// What this binary is, as JSON (version, build date, oldest version it upgrades from,
    /// wire and storage format versions): read by `package build` and by agents.
    #[command(hide = true)]
    BuildInfo,
}

#[derive(Subcommand)]
pub enum PackageCommand {
    /// Package a `shoal` binary (this one unless --binary) with its manifest.
    Build(PackageBuildArgs),
    /// Make an Ed25519 signing key (FILE, mode 0600) and its public key (FILE.pub) for
    /// agents' `packageVerifyKey`.
    Keygen(PackageKeygenArgs),
    /// Verify a package and print its manifest.
    Inspect(PackageInspectArgs),
}

#[derive(Args)]
pub struct PackageBuildArgs {
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The binary to package (its `build-info` says what it is); default: this `shoal`.
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Sign the manifest with this key (`shoal package keygen`).
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct PackageKeygenArgs {
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct PackageInspectArgs {
    pub package: PathBuf,
    /// Also require a valid signature by this public key.
    #[arg(long, value_name = "FILE")]
    pub verify_key: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("action").args(["package", "resume", "rollback", "finalize", "pause", "show"]).required(true)))]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Upgrade to this package's version.
    #[arg(long, value_name = "FILE")]
    pub package: Option<PathBuf>,
    /// Continue the upgrade recorded in the controllers (after a pause, a budget stop, or a
    /// killed orchestrator).
    #[arg(long)]
    pub resume: bool,
    /// Return every upgraded machine to the version it ran before (refused once finalized).
    #[arg(long)]
    pub rollback: bool,
    /// Raise the cluster version: the new release's formats and features are used from then
    /// on and rollback is no longer possible. Refused until every node runs the new version.
    #[arg(long)]
    pub finalize: bool,
    /// Ask a running upgrade to stop before its next machine (it records where it stopped).
    #[arg(long)]
    pub pause: bool,
    /// Print the recorded upgrade.
    #[arg(long)]
    pub show: bool,
    /// Stop after this many machines (more with --resume).
    #[arg(long, value_name = "N")]
    pub canary: Option<usize>,
    /// The probe writer's appends per second (0: no probe).
    #[arg(long, default_value_t = 50.0)]
    pub probe_rate: f64,
    /// Pause before the next machine if the probe saw a gap between acknowledgements longer
    /// than this during the last one.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub max_stall: Duration,
    /// Pause before the next machine if the probe saw more failed appends than this.
    #[arg(long, default_value_t = 0)]
    pub max_errors: u64,
    /// How long a machine's nodes may take to be back (UP, on the new version) before the
    /// machine is rolled back.
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    pub node_timeout: Duration,
    /// A writer's `--record` file: the report then shows that writer's failures, stalls and
    /// p99 during each step.
    #[arg(long, value_name = "FILE")]
    pub writer_record: Option<PathBuf>,
    /// Run the pre-flight checks (they stage the package on every agent, beside the running
    /// version, so the upgrade later does not send it again) and print the plan; nothing that
    /// runs changes.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
#[command(
    mut_arg("sites", |a| a.help("Data node addresses (host:port,...), tried in order; the cluster secret comes from --secret-file or $SHOAL_CLUSTER_SECRET")),
    group(clap::ArgGroup::new("bound").args(["count", "duration"]).required(true).multiple(true)),
)]
pub struct WriteArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Log in as this user (Flight SQL handshake) instead of using the cluster secret; the
    /// password comes from --password-file or $SHOAL_PASSWORD.
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long, requires = "user")]
    pub password_file: Option<PathBuf>,
    #[arg(long, default_value = "dfs://stock")]
    pub db: String,
    #[arg(long, default_value = "stock")]
    pub table: String,
    /// Appends per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Rows per append.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Stop after this many rows.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop sending after this long (appends in flight then are still waited for).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Write every append's outcome to FILE, one JSON object a line (`shoal verify --record`).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Show the live rate and latency even when stderr is not a terminal (a line a second).
    #[arg(long)]
    pub progress: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[arg(long, default_value = "dfs://stock")]
    pub db: String,
    #[arg(long, default_value = "stock")]
    pub table: String,
    /// The newest row's `time` must be at most this old.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub max_age: Duration,
    /// The record `shoal write --record` wrote: also check every acknowledged id is present
    /// exactly once and nothing is present that was never sent.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct SqlArgs {
    /// A SQL statement or a DolphinDB script.
    #[arg(required_unless_present = "file")]
    pub sql: Option<String>,
    /// Read the statement or script from FILE.
    #[arg(short = 'f', long, value_name = "FILE", conflicts_with = "sql")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub run: SqlRunArgs,
}

#[derive(Args)]
pub struct ScriptArgs {
    pub file: PathBuf,
    #[command(flatten)]
    pub run: SqlRunArgs,
}

/// Where `sql` and `script` run, and how they print.
#[derive(Args)]
pub struct SqlRunArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print a table result as CSV with a header line.
    #[arg(long)]
    pub csv: bool,
}

impl From<ScriptArgs> for SqlArgs {
    fn from(a: ScriptArgs) -> Self {
        SqlArgs {
            sql: None,
            file: Some(a.file),
            run: a.run,
        }
    }
}

#[derive(Args)]
pub struct ChunksArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Only chunks that are not COMPLETE (CONSTRUCTING, RECOVERING).
    #[arg(long)]
    pub not_complete: bool,
    #[arg(long)]
    pub json: bool,
}

impl Command {
    /// Long-running server roles, as opposed to one-shot tools.
    pub fn is_role(&self) -> bool {
        matches!(
            self,
            Command::Controller(_) | Command::Agent(_) | Command::Datanode(_)
        )
    }
}

#[derive(Args)]
pub struct RoleArgs {
    /// The machine's home directory holding its config files.
    #[arg(long)]
    pub home: PathBuf,
}

#[derive(Args)]
pub struct AgentArgs {
    #[arg(long)]
    pub home: PathBuf,
    /// Do not start the machine's nodes when the agent starts.
    #[arg(long)]
    pub no_start: bool,
}

#[derive(Args)]
pub struct DataNodeArgs {
    #[arg(long)]
    pub home: PathBuf,
    /// This data node's alias in cluster.nodes.
    #[arg(long)]
    pub alias: String,
}

#[derive(Subcommand)]
pub enum LocalCommand {
    /// Write a 3-machine cluster's config under DIR (unless there is one), start its agents in
    /// the background and return when every node is up.
    Up(LocalUpArgs),
    /// Stop everything `local up` started under DIR.
    Down(LocalDirArgs),
}

#[derive(Args)]
pub struct LocalUpArgs {
    #[arg(long)]
    pub dir: PathBuf,
    /// Machine addresses, one per simulated machine.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1,127.0.0.2,127.0.0.3"
    )]
    pub hosts: Vec<String>,
    /// Controller port; the agent uses the next, the data node the one after.
    #[arg(long, default_value_t = 8920)]
    pub base_port: u16,
    /// How long to wait for every node to be up.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[arg(long)]
    pub json: bool,
    /// Override a key of the new cluster's controller.cfg or cluster.cfg (whichever knows it;
    /// both for shared keys such as dataSync), e.g. `--set dfsRecoveryWaitTime=2000` or
    /// `--set TSDBCacheEngineSize=0.5` (repeatable; checked before anything is written).
    #[arg(long, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Encrypt every connection: a CA and a certificate per machine are made under DIR/tls and
    /// DIR/<host>/tls, and every file gets `enableSSL=1` (a new cluster only).
    #[arg(long)]
    pub tls: bool,
    /// `--tls` with `sslMutualAuth=1`: every connection must also present a certificate of the
    /// cluster's CA (the CLI presents DIR/tls/client.pem).
    #[arg(long)]
    pub mutual_tls: bool,
}

#[derive(Args)]
pub struct LocalDirArgs {
    #[arg(long)]
    pub dir: PathBuf,
}

/// Where a client-side command finds the cluster.
#[derive(Args, Clone)]
pub struct TargetArgs {
    /// Controller addresses (host:port,...); the cluster secret comes from --secret-file or
    /// $SHOAL_CLUSTER_SECRET.
    #[arg(long, value_delimiter = ',', conflicts_with = "dir")]
    pub sites: Vec<String>,
    /// The directory of a local cluster (`shoal local up --dir`).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// File holding the cluster secret (with --sites).
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// The CA certificate (PEM) of a cluster with `enableSSL=1`: connect with TLS, trusting
    /// it. With --dir, DIR/tls/ca.pem when it exists.
    #[arg(long, env = shoal_common::tls::CA_ENV, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// The certificate (PEM) to present to a cluster with `sslMutualAuth=1`, with --tls-key and
    /// --tls-ca. With --dir alone, DIR/tls/client.pem when it exists.
    #[arg(
        long,
        env = shoal_common::tls::CERT_ENV,
        value_name = "FILE",
        requires_all = ["tls_key", "tls_ca"]
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = shoal_common::tls::KEY_ENV, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TargetArgs {
    /// The cluster in local directory `dir`, found as `--dir DIR` finds it.
    pub fn of_dir(dir: &Path) -> Self {
        TargetArgs {
            sites: Vec::new(),
            dir: Some(dir.to_path_buf()),
            secret_file: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum HostCommand {
    /// First install of one machine (run once on each host): this binary as its first version
    /// in HOME/versions/<version>, HOME/current pointing at it, and the machine's config files
    /// from the cluster's cluster.nodes. Start its agent as HOME/current/shoal agent --home HOME
    /// (deploy/systemd/shoal-agent.service); docs/DEPLOY.md walks through a cluster.
    Init(HostInitArgs),
    /// Stop the machine's controller and data nodes (its agent keeps running).
    Stop(HostArgs),
    /// Start the machine's nodes and wait until they are up.
    Start(HostArgs),
    /// The machine's node processes as its agent sees them: state, pid, restarts, last exit.
    Ps(HostArgs),
}

#[derive(Args)]
pub struct HostInitArgs {
    /// The machine's home: config files, installed versions, logs and the nodes' data
    /// (created if missing; refused if already initialised).
    #[arg(long)]
    pub home: PathBuf,
    /// The cluster's cluster.nodes (the same file on every machine).
    #[arg(long, value_name = "FILE")]
    pub cluster_nodes: PathBuf,
    /// This machine: its address in cluster.nodes, or its agent's alias.
    #[arg(long)]
    pub host: String,
    /// File holding the cluster secret (the same on every machine).
    #[arg(long, value_name = "FILE")]
    pub secret_file: PathBuf,
    /// The users file (`shoal user add`; the same on every machine). Without it only the
    /// cluster secret logs in.
    #[arg(long, value_name = "FILE")]
    pub users_file: Option<PathBuf>,
    /// Override a key of the machine's controller.cfg or cluster.cfg (whichever knows it),
    /// as `shoal local up --set` does (repeatable; checked before anything is written).
    #[arg(long, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Also write the agent's systemd unit (deploy/systemd/shoal-agent.service with HOME's
    /// paths) to FILE, e.g. /etc/systemd/system/shoal-agent.service (refused if FILE exists).
    #[arg(long, value_name = "FILE")]
    pub systemd_unit: Option<PathBuf>,
    /// Encrypt every connection: DIR holds the machine's ca.pem, node.pem and node.key (as
    /// `shoal cert create-node` writes them; the certificate must name the machine's address),
    /// copied to HOME/tls and named in every config file with enableSSL=1.
    #[arg(long, value_name = "DIR")]
    pub tls_dir: Option<PathBuf>,
    /// With --tls-dir: sslMutualAuth=1, every connection must present a certificate of the CA
    /// (clients too: `shoal cert create-client`).
    #[arg(long, requires = "tls_dir")]
    pub mutual_tls: bool,
}

#[derive(Subcommand)]
pub enum CertCommand {
    /// Make a CA: DIR/ca.pem and its signing key DIR/ca.key (mode 0600; keep it off the
    /// cluster's machines).
    #[command(name = "create-ca")]
    Ca(CertCaArgs),
    /// Make a machine's certificate, signed by the CA, for `host init --tls-dir`: OUT/ca.pem,
    /// OUT/node.pem, OUT/node.key.
    #[command(name = "create-node")]
    Node(CertNodeArgs),
    /// Make a client certificate (for a cluster with sslMutualAuth=1): OUT/ca.pem,
    /// OUT/client.pem, OUT/client.key.
    #[command(name = "create-client")]
    Client(CertClientArgs),
}

#[derive(Args)]
pub struct CertCaArgs {
    /// Where the CA's files go (created if missing; refused if they exist).
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
}

#[derive(Args)]
pub struct CertNodeArgs {
    /// The CA made by `create-ca`.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// The machine's address as in cluster.nodes, and any other name clients dial it by
    /// (repeatable).
    #[arg(long = "host", value_name = "ADDRESS", required = true)]
    pub hosts: Vec<String>,
    /// Where the machine's files go (created if missing; refused if they exist).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct CertClientArgs {
    /// The CA made by `create-ca`.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// Where the client's files go (created if missing; refused if they exist).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct HostArgs {
    /// The machine (host address as in cluster.nodes) or its agent's alias.
    pub host: String,
    #[command(flatten)]
    pub target: TargetArgs,
    /// With `start`: how long to wait for the nodes to be up.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user, reading the password from standard input: to the cluster (replicated by the
    /// controllers, effective at once; cluster version 2), or with --file to a users file
    /// (`cluster.users`, read by nodes when they start; how a new cluster gets its first admin).
    Add(UserAddArgs),
    /// Remove a user: its tokens stop working at once.
    Remove(UserNameArgs),
    /// Change a user's password (read from standard input): its sessions end.
    Passwd(UserNameArgs),
    /// Change a user's role (reader, writer, admin); applies at once.
    Role(UserRoleArgs),
    /// List the users and their roles.
    List(UserListArgs),
}

/// How `shoal user` reaches the cluster: the cluster secret (--dir, --sites with
/// --secret-file), or as an admin user (--login).
#[derive(Args)]
pub struct UserAdminArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Act as this user (it must be an admin) instead of with the cluster secret; its password
    /// comes from --login-password-file or $SHOAL_PASSWORD.
    #[arg(long, value_name = "USER")]
    pub login: Option<String>,
    #[arg(long, requires = "login", value_name = "FILE")]
    pub login_password_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct UserAddArgs {
    pub name: String,
    /// reader (queries), writer (appends too), admin (DDL and administration too).
    #[arg(long)]
    pub role: String,
    /// Add to this users file instead of the cluster (created with mode 0600 if missing).
    #[arg(long, conflicts_with_all = ["sites", "dir", "login"])]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub admin: UserAdminArgs,
}

#[derive(Args)]
pub struct UserNameArgs {
    pub name: String,
    #[command(flatten)]
    pub admin: UserAdminArgs,
}

#[derive(Args)]
pub struct UserRoleArgs {
    pub name: String,
    /// reader, writer or admin.
    pub role: String,
    #[command(flatten)]
    pub admin: UserAdminArgs,
}

#[derive(Args)]
pub struct UserListArgs {
    #[command(flatten)]
    pub admin: UserAdminArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// A key's value on every node that has it (the seed's pnodeRun(getConfig{`KEY})).
    Get(ConfigGetArgs),
}

#[derive(Args)]
pub struct ConfigGetArgs {
    pub key: String,
    #[command(flatten)]
    pub target: TargetArgs,
    #[arg(long)]
    pub json: bool,
}

/// `500ms`, `30s`, `2m` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 500ms, 30s, 2m)"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("`{s}`: unknown unit `{unit}` (use ms, s or m)")),
    }
}

#[derive(Subcommand)]
pub enum ChaosCommand {
    /// One run: a fresh cluster in network namespaces, the workload, the nemeses (`--nemesis`
    /// in turn, or a random schedule from `--seed`), healing, final reads and the verdict.
    /// Exits 0 with no violation, 1 with some, 77 where the tier cannot run (not root, no
    /// network namespaces).
    Run(ChaosRunArgs),
    /// Judge a history (`history.jsonl` of a run): the summary, or `--json`.
    Check(ChaosCheckArgs),
    /// The clients of a run, inside its client namespace.
    #[command(hide = true)]
    Workload(ChaosWorkloadArgs),
    /// The reads after healing, inside the client namespace.
    #[command(hide = true)]
    Final(ChaosFinalArgs),
    /// DDL beside the workload (a `ddl-churn` nemesis), inside the client namespace.
    #[command(hide = true)]
    Churn(ChaosChurnArgs),
}

#[derive(Args)]
pub struct ChaosRunArgs {
    /// Nemeses to run in turn, each held --hold.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub nemesis: Vec<crate::cmd::Nemesis>,
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub hold: Duration,
    /// A random schedule from this seed (the same seed, the same schedule) filling --duration.
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Nemeses a random schedule never draws (e.g. those of known, open findings).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub exclude: Vec<crate::cmd::Nemesis>,
    /// Where the histories, report and cluster go (default: a new directory under /tmp).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 4)]
    pub writers: u32,
    #[arg(long, default_value_t = 2)]
    pub readers: u32,
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    pub read_every: Duration,
    /// The `shoal` build `upgrade` nemeses upgrade the cluster to (default:
    /// target/upgrade/shoal-next of this binary's target directory, which
    /// scripts/build-upgrade-binaries makes).
    #[arg(long, value_name = "BINARY")]
    pub upgrade_to: Option<PathBuf>,
    /// Replicas of each chunk (`dfsReplicationFactor`), each on its own machine of the three.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub replicas: u8,
    /// A controller.cfg or cluster.cfg key for the run's cluster, as `local up --set`.
    #[arg(long, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ChaosCheckArgs {
    pub history: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ChaosWorkloadArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_parser = parse_duration)]
    pub duration: Duration,
    #[arg(long, default_value_t = 4)]
    pub writers: u32,
    #[arg(long, default_value_t = 2)]
    pub readers: u32,
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    pub read_every: Duration,
    /// Appends per writer at most.
    #[arg(long, default_value_t = 100_000)]
    pub max_appends: u64,
    /// Between one writer's appends.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub pause: Duration,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args)]
pub struct ChaosChurnArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Rounds start until this much time has passed.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Duration,
}

#[derive(Args)]
pub struct ChaosFinalArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[arg(long)]
    pub out: PathBuf,
    /// How long to wait for every chunk to recover before reading anyway.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,
}
