//! One module per subcommand.

mod cert;
mod chaos;
mod chunks;
mod config;
mod dir_before;
mod host;
mod host_init;
mod local;
pub(crate) mod local_tls;
mod machine_config;
mod package;
mod pki;
mod roles;
mod sql;
mod status;
mod upgrade;
mod user;
mod verify;
mod write;

use std::process::ExitCode;

pub use chaos::Nemesis;

use crate::cli::{CertCommand, Command, ConfigCommand, HostCommand, LocalCommand, PackageCommand};

pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        // The writer and the checker report failures through their exit status.
        Command::Write(a) => return write::run(a).await,
        Command::Verify(a) => return verify::run(a).await,
        Command::Chaos(c) => return chaos::run(c).await,
        Command::Controller(a) => roles::controller(a).await,
        Command::Agent(a) => roles::agent(a).await,
        Command::Datanode(a) => roles::datanode(a).await,
        Command::Local(LocalCommand::Up(a)) => local::up(a).await,
        Command::Local(LocalCommand::Down(a)) => local::down(a).await,
        Command::Status(a) => status::run(a).await,
        Command::Host(HostCommand::Init(a)) => host_init::run(a),
        Command::Host(HostCommand::Stop(a)) => host::stop(a).await,
        Command::Host(HostCommand::Start(a)) => host::start(a).await,
        Command::Host(HostCommand::Ps(a)) => host::ps(a).await,
        Command::Config(ConfigCommand::Get(a)) => config::get(a).await,
        Command::Sql(a) => sql::run(a).await,
        Command::Script(a) => sql::run(a.into()).await,
        Command::Chunks(a) => chunks::run(a).await,
        Command::User(c) => user::run(c).await,
        Command::Cert(CertCommand::Ca(a)) => cert::create_ca(a),
        Command::Cert(CertCommand::Node(a)) => cert::create_node(a),
        Command::Cert(CertCommand::Client(a)) => cert::create_client(a),
        Command::Package(PackageCommand::Build(a)) => package::build(a).await,
        Command::Package(PackageCommand::Keygen(a)) => package::keygen(a),
        Command::Package(PackageCommand::Inspect(a)) => package::inspect(a),
        Command::Upgrade(a) => return upgrade::run(a).await,
        Command::BuildInfo => package::build_info(),
    }
    .map(|()| ExitCode::SUCCESS)
}
