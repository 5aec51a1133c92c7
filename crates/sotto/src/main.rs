//! `sotto`: run the local stack, chat privately with a verified enclave, and audit it.

mod attest_cmd;
mod cli_client;
mod gateway;
mod history_cmd;
mod log_cmd;
mod model_cmd;
mod release_cmd;
mod stack;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Private conversations with a language model its operator cannot read.
#[derive(Parser, Debug)]
#[command(name = "sotto", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start enclave (simulated TEE) and relay on loopback; runs until Ctrl-C.
    Up(stack::UpArgs),
    /// Ask one question; the answer streams to stdout.
    Ask(cli_client::AskArgs),
    /// Interactive chat (Ctrl-C cancels the current answer; Ctrl-D exits).
    Chat(cli_client::ChatArgs),
    /// Connect, verify the enclave and print every check (exit 0 only if all pass).
    Verify(cli_client::VerifyArgs),
    /// Run the enclave process (normally started by `sotto up` or inside the VM).
    Enclave(stack::EnclaveArgs),
    /// Run the relay process (the operator's untrusted front door).
    Relay(stack::RelayArgs),
    /// Attestation tools for auditors.
    #[command(subcommand)]
    Attest(attest_cmd::AttestCommand),
    /// Signing keys for releases, the log and witnesses.
    #[command(subcommand)]
    Key(release_cmd::KeyCommand),
    /// Release manifests: build, sign, check.
    #[command(subcommand)]
    Release(release_cmd::ReleaseCommand),
    /// The transparency log of releases: append, serve, audit.
    #[command(subcommand)]
    Log(log_cmd::LogCommand),
    /// A witness that cosigns the log's checkpoints.
    #[command(subcommand)]
    Witness(log_cmd::WitnessCommand),
    /// Local OpenAI-compatible server: every request goes through a verified channel.
    Gateway(gateway::GatewayArgs),
    /// Encrypted history account of this device.
    #[command(subcommand)]
    Account(history_cmd::AccountCommand),
    /// Encrypted conversation history: list, show, export, delete.
    #[command(subcommand)]
    History(history_cmd::HistoryCommand),
    /// Folders of the encrypted history (with instructions: their system prompt).
    #[command(subcommand)]
    Folder(history_cmd::FolderCommand),
    /// Devices of the history account.
    #[command(subcommand)]
    Device(history_cmd::DeviceCommand),
    /// Settings of the history account (encrypted, synced across devices).
    #[command(subcommand)]
    Settings(history_cmd::SettingsCommand),
    /// Model files: convert llama2.c to GGUF, inspect, benchmark the built-in engine.
    #[command(subcommand)]
    Model(model_cmd::ModelCommand),
    /// Serve the built-in engine as a plain, UNENCRYPTED OpenAI-compatible server on
    /// loopback (test upstream and plaintext baseline).
    Serve(stack::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("SOTTO_LOG").unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Up(a) => stack::up(a).await,
            Command::Enclave(a) => stack::enclave(a).await,
            Command::Relay(a) => stack::relay(a).await,
            Command::Serve(a) => stack::serve(a).await,
            Command::Ask(a) => cli_client::ask(a).await,
            Command::Chat(a) => cli_client::chat(a).await,
            Command::Verify(a) => cli_client::verify(a).await,
            Command::Gateway(a) => gateway::gateway(a).await,
            Command::Attest(c) => attest_cmd::run_command(c),
            Command::Key(c) => release_cmd::run_key(c),
            Command::Release(c) => release_cmd::run_release(c),
            Command::Model(c) => model_cmd::run_model(c),
            Command::Log(c) => log_cmd::run_log(c).await,
            Command::Witness(c) => log_cmd::run_witness(c).await,
            Command::Account(c) => history_cmd::run_account(c).await,
            Command::History(c) => history_cmd::run_history(c).await,
            Command::Folder(c) => history_cmd::run_folder(c).await,
            Command::Device(c) => history_cmd::run_device(c).await,
            Command::Settings(c) => history_cmd::run_settings(c).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Errors the command reports; the message is for the user (never contains prompts).
pub type CliError = Box<dyn std::error::Error + Send + Sync>;
