//! `sotto account|history|folder|device`: the encrypted history (crate `sotto-history`), and
//! the autosave used by `sotto ask --save` and `sotto chat`.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Args, Subcommand};
use serde_json::json;
use sotto_history::{HistoryClient, HistoryError};
use sotto_vault::Role;

use crate::{CliError, stack::default_state_dir};

/// The history state directory inside a `sotto` state directory.
pub fn history_dir(state_dir: Option<&Path>) -> PathBuf {
    state_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(default_state_dir)
        .join("history")
}

#[derive(Args, Debug)]
pub struct StateArgs {
    /// State directory (default: `SOTTO_STATE_DIR` or ~/.local/share/sotto); the history
    /// account lives in its `history/` subdirectory.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

impl StateArgs {
    fn dir(&self) -> PathBuf {
        history_dir(self.state_dir.as_deref())
    }

    async fn open(&self) -> Result<HistoryClient, HistoryError> {
        HistoryClient::open(&self.dir()).await
    }
}

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Create a history account on a store for this device (a new device secret).
    Create {
        /// Store URL, e.g. http://127.0.0.1:8091.
        #[arg(long)]
        store: String,
        /// Name of this device in the (encrypted) device list.
        #[arg(long, default_value = "cli")]
        name: String,
        #[command(flatten)]
        state: StateArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum HistoryCommand {
    /// List conversations (by folder and order).
    List {
        /// Fetch the complete listing instead of the changes since the last sync (also
        /// checks that the store still holds every item this device has seen).
        #[arg(long)]
        full: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Print one conversation.
    Show {
        /// Conversation id.
        id: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Write the whole decrypted history as JSON.
    Export {
        /// Output file (default: stdout); created with mode 0600.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Delete a conversation (or folder).
    Delete {
        /// Item id.
        id: String,
        #[command(flatten)]
        state: StateArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum FolderCommand {
    /// Create a folder (placed last); prints its id.
    Create {
        /// Name.
        name: String,
        /// Instructions: the system prompt of its conversations.
        #[arg(long, default_value = "")]
        instructions: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Rename a folder.
    Rename {
        /// Folder id.
        id: String,
        /// New name.
        name: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Move a folder (or a conversation) just before or after another one.
    Move {
        /// Folder or conversation id.
        id: String,
        /// Place before this id.
        #[arg(long, conflicts_with = "after", required_unless_present = "after")]
        before: Option<String>,
        /// Place after this id.
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Set a folder's instructions (the system prompt of its conversations).
    Instructions {
        /// Folder id.
        id: String,
        /// Instructions.
        text: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// List folders.
    List {
        #[command(flatten)]
        state: StateArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// List the account's devices.
    List {
        #[command(flatten)]
        state: StateArgs,
    },
    /// Pair THIS machine as a new device of an existing account: prints a code to type on
    /// a device that already has the account (`sotto device approve`), waits for it, then
    /// prints this device's id.
    Add {
        /// Store URL, e.g. http://127.0.0.1:8091.
        #[arg(long)]
        store: String,
        /// Account id (shown by `sotto account create` / `sotto device approve`).
        #[arg(long)]
        account: String,
        /// Name of this device (shown to the approving device and in the device list).
        #[arg(long, default_value = "cli")]
        name: String,
        /// How long to wait for the approval, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Approve a pending `sotto device add` with the code it shows. Without `--code`, lists
    /// the pending requests and asks for the code on standard input.
    Approve {
        /// The pairing slot (needed when several requests are pending).
        #[arg(long)]
        slot: Option<String>,
        /// The 8-digit code shown on the new device.
        #[arg(long)]
        code: Option<String>,
        /// How long to wait for the new device's confirmation, in seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Remove a device: revoke it on the store and rotate the account key for the rest.
    Remove {
        /// Credential id of the device.
        id: String,
        #[command(flatten)]
        state: StateArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum SettingsCommand {
    /// Print the account's settings (encrypted on the store, synced across devices).
    Show {
        #[command(flatten)]
        state: StateArgs,
    },
    /// Set one setting: `temperature` (0 to 2: the default of `sotto chat` and of `ask`
    /// with `--save`/`--folder`), `save-history` (true/false: whether `sotto chat` saves
    /// turns), `default-model` (a model id, for clients that offer several), or any other
    /// `NAME` (kept as a string, for other clients).
    Set {
        /// Setting name.
        name: String,
        /// Value.
        value: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Remove one setting (back to the default).
    Unset {
        /// Setting name.
        name: String,
        #[command(flatten)]
        state: StateArgs,
    },
}

/// Applies `sotto settings set|unset` to the settings (`None` value: unset).
fn edit_setting(
    s: &mut sotto_vault::Settings,
    name: &str,
    value: Option<&str>,
) -> Result<(), HistoryError> {
    match name {
        "temperature" => {
            s.temperature = match value {
                None => None,
                Some(v) => match v.parse::<f64>() {
                    Ok(t) if (0.0..=2.0).contains(&t) => Some(t),
                    _ => {
                        return Err(HistoryError::InvalidArgument(
                            "temperature must be a number from 0 to 2",
                        ));
                    }
                },
            }
        }
        "save-history" => {
            s.save_history = match value {
                None => None,
                Some("true") => Some(true),
                Some("false") => Some(false),
                Some(_) => {
                    return Err(HistoryError::InvalidArgument(
                        "save-history must be true or false",
                    ));
                }
            }
        }
        "default-model" => {
            s.default_model = match value {
                None => None,
                Some(v) if !v.is_empty() && v.len() <= 256 => Some(v.to_string()),
                Some(_) => {
                    return Err(HistoryError::InvalidArgument(
                        "default-model must be 1 to 256 bytes",
                    ));
                }
            }
        }
        other => {
            if other.is_empty()
                || other.len() > 64
                || !other
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                return Err(HistoryError::InvalidArgument(
                    "a setting name is 1 to 64 of [A-Za-z0-9._-]",
                ));
            }
            match value {
                None => {
                    s.extra.remove(other);
                }
                Some(v) if v.len() <= 4096 => {
                    s.extra.insert(other.to_string(), json!(v));
                }
                Some(_) => {
                    return Err(HistoryError::InvalidArgument(
                        "a setting value is at most 4096 bytes",
                    ));
                }
            }
        }
    }
    Ok(())
}

pub async fn run_settings(c: SettingsCommand) -> Result<ExitCode, CliError> {
    let (state, name, value) = match c {
        SettingsCommand::Show { state } => {
            let s = state.open().await?.settings().await?.value;
            print_settings(&s);
            return Ok(ExitCode::SUCCESS);
        }
        SettingsCommand::Set { name, value, state } => (state, name, Some(value)),
        SettingsCommand::Unset { name, state } => (state, name, None),
    };
    // Checked before anything is sent.
    edit_setting(
        &mut sotto_vault::Settings::default(),
        &name,
        value.as_deref(),
    )?;
    let mut client = state.open().await?;
    let s = client
        .update_settings(|s| edit_setting(s, &name, value.as_deref()))
        .await?;
    print_settings(&s.value);
    Ok(ExitCode::SUCCESS)
}

fn print_settings(s: &sotto_vault::Settings) {
    let show = |v: Option<String>| v.unwrap_or_else(|| "(default)".into());
    println!(
        "temperature\t{}",
        show(s.temperature.map(|t| t.to_string()))
    );
    println!(
        "save-history\t{}",
        show(s.save_history.map(|b| b.to_string()))
    );
    println!("default-model\t{}", show(s.default_model.clone()));
    for (k, v) in &s.extra {
        match v.as_str() {
            Some(text) => println!("{k}\t{text}"),
            None => println!("{k}\t{v}"),
        }
    }
}

pub async fn run_account(c: AccountCommand) -> Result<ExitCode, CliError> {
    match c {
        AccountCommand::Create { store, name, state } => {
            let client = HistoryClient::create_account(&store, &state.dir(), &name).await?;
            println!("account {}", client.account_id());
            println!("device {}", client.credential_id());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_history(c: HistoryCommand) -> Result<ExitCode, CliError> {
    match c {
        HistoryCommand::List { full, state } => {
            let mut client = state.open().await?;
            let snap = if full {
                client.sync_full().await?
            } else {
                client.sync().await?
            };
            for c in &snap.conversations {
                let folder = c
                    .value
                    .folder_id
                    .as_deref()
                    .and_then(|f| snap.folder(f))
                    .map(|f| f.value.name.as_str())
                    .unwrap_or("-");
                println!(
                    "{}\t{}\t{}\t{} messages",
                    c.id,
                    folder,
                    c.value.title,
                    c.value.messages.len()
                );
            }
        }
        HistoryCommand::Show { id, state } => {
            let mut client = state.open().await?;
            let c = client.conversation(&id).await?;
            println!("# {}", c.value.title);
            for m in &c.value.messages {
                println!("[{}] {}", role_name(m.role), m.content);
            }
        }
        HistoryCommand::Export { out, state } => {
            let mut client = state.open().await?;
            let v = client.export().await?;
            let text = serde_json::to_string_pretty(&v)?;
            match out {
                Some(path) => write_private(&path, text.as_bytes())?,
                None => println!("{text}"),
            }
        }
        HistoryCommand::Delete { id, state } => {
            state.open().await?.delete(&id).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_folder(c: FolderCommand) -> Result<ExitCode, CliError> {
    match c {
        FolderCommand::Create {
            name,
            instructions,
            state,
        } => {
            let id = state
                .open()
                .await?
                .create_folder(&name, &instructions)
                .await?;
            println!("{id}");
        }
        FolderCommand::Rename { id, name, state } => {
            state.open().await?.rename_folder(&id, &name).await?;
        }
        FolderCommand::Move {
            id,
            before,
            after,
            state,
        } => {
            state
                .open()
                .await?
                .move_item(&id, before.as_deref(), after.as_deref())
                .await?;
        }
        FolderCommand::Instructions { id, text, state } => {
            state.open().await?.set_instructions(&id, &text).await?;
        }
        FolderCommand::List { state } => {
            let snap = state.open().await?.sync().await?;
            for f in &snap.folders {
                println!("{}\t{}", f.id, f.value.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_device(c: DeviceCommand) -> Result<ExitCode, CliError> {
    match c {
        DeviceCommand::List { state } => {
            for d in state.open().await?.devices().await? {
                println!(
                    "{}\t{}\t{}{}",
                    d.credential_id,
                    if d.name.is_empty() { "-" } else { &d.name },
                    if d.active { "active" } else { "removed" },
                    if d.this_device { "\t(this device)" } else { "" }
                );
            }
        }
        DeviceCommand::Add {
            store,
            account,
            name,
            timeout,
            state,
        } => {
            let request =
                HistoryClient::request_pairing(&store, &state.dir(), &account, &name).await?;
            println!("pairing code: {}", request.code().display());
            println!("slot {}", request.slot());
            println!(
                "on a device of this account run: sotto device approve --code \"{}\"",
                request.code().display()
            );
            use std::io::Write;
            let _ = std::io::stdout().flush();
            let client = request
                .await_approval(std::time::Duration::from_secs(timeout))
                .await?;
            println!("account {}", client.account_id());
            println!("device {}", client.credential_id());
        }
        DeviceCommand::Approve {
            slot,
            code,
            timeout,
            state,
        } => {
            let mut client = state.open().await?;
            let pending = client.list_pairing_requests().await?;
            let chosen = match &slot {
                Some(s) => pending.iter().find(|p| &p.slot_id == s),
                None if pending.len() == 1 => pending.first(),
                None => None,
            };
            let Some(chosen) = chosen.cloned() else {
                for p in &pending {
                    eprintln!("pending: slot {}\tname {:?}", p.slot_id, p.name);
                }
                let msg = if pending.is_empty() {
                    "NO_PAIRING_REQUEST: no pending pairing request (run `sotto device add` on the new device)"
                } else if slot.is_some() {
                    "NO_PAIRING_REQUEST: no pending pairing request with that slot"
                } else {
                    "SEVERAL_PAIRING_REQUESTS: several requests are pending: choose one with --slot"
                };
                return Err(msg.into());
            };
            eprintln!(
                "pairing request from device {:?} (slot {})",
                chosen.name, chosen.slot_id
            );
            let code = match code {
                Some(c) => c,
                None => {
                    eprint!("code shown on the new device: ");
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim().to_string()
                }
            };
            let id = client
                .approve_pairing(
                    &chosen.slot_id,
                    &code,
                    std::time::Duration::from_secs(timeout),
                )
                .await?;
            println!("approved device {id}");
        }
        DeviceCommand::Remove { id, state } => {
            let mut client = state.open().await?;
            client.remove_device(&id).await?;
            println!(
                "removed; account key rotated to epoch {}",
                client.current_epoch()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(bytes)
}

/// Saving finished turns of `ask --save` / `chat` to the encrypted history.
pub struct Autosave {
    client: HistoryClient,
    conversation: Option<String>,
    folder: Option<String>,
}

/// What a chat starts from: the folder's instructions and earlier messages.
pub struct Prepared {
    pub autosave: Option<Autosave>,
    /// The account's settings (defaults without an account).
    pub settings: sotto_vault::Settings,
    /// OpenAI-style messages to start the request history with (system first).
    pub messages: Vec<serde_json::Value>,
}

impl Autosave {
    /// Opens the history if an account exists (or fails if `required`), resolves the
    /// folder (by id or name) and the conversation to continue.
    pub async fn prepare(
        state_dir: Option<&Path>,
        required: bool,
        continue_id: Option<&str>,
        folder: Option<&str>,
    ) -> Result<Prepared, CliError> {
        let dir = history_dir(state_dir);
        let wanted = required || continue_id.is_some() || folder.is_some();
        if !HistoryClient::exists(&dir) {
            if wanted {
                return Err(HistoryError::NoAccount.into());
            }
            return Ok(Prepared {
                autosave: None,
                settings: Default::default(),
                messages: Vec::new(),
            });
        }
        let mut client = HistoryClient::open(&dir).await?;
        let snap = client.sync().await?;
        let mut messages = Vec::new();
        let mut folder_id = match folder {
            Some(f) => Some(
                snap.folder(f)
                    .ok_or(HistoryError::NotFound("folder"))?
                    .id
                    .clone(),
            ),
            None => None,
        };
        if let Some(id) = continue_id {
            let c = snap
                .conversation(id)
                .ok_or(HistoryError::NotFound("conversation"))?;
            if folder_id.is_none() {
                folder_id = c.value.folder_id.clone();
            }
            for m in &c.value.messages {
                messages.push(json!({"role": role_name(m.role), "content": m.content}));
            }
        }
        if let Some(f) = folder_id.as_deref().and_then(|f| snap.folder(f))
            && !f.value.instructions.is_empty()
        {
            messages.insert(
                0,
                json!({"role": "system", "content": f.value.instructions}),
            );
        }
        Ok(Prepared {
            settings: snap.settings.map(|e| e.value).unwrap_or_default(),
            autosave: Some(Autosave {
                client,
                conversation: continue_id.map(str::to_string),
                folder: folder_id,
            }),
            messages,
        })
    }

    /// Saves one finished turn; the first one creates the conversation.
    pub async fn save_turn(
        &mut self,
        model: &str,
        user: &str,
        assistant: &str,
    ) -> Result<String, CliError> {
        let turns = [
            (Role::User, user.to_string()),
            (Role::Assistant, assistant.to_string()),
        ];
        let id = self
            .client
            .append_turns(
                self.conversation.as_deref(),
                self.folder.as_deref(),
                model,
                &turns,
            )
            .await?;
        self.conversation = Some(id.clone());
        Ok(id)
    }
}
