//! `fraudlake keys create|list|revoke`: API keys for the scoring server's write routes
//! (scopes `score`, `label`, `admin`), kept hashed in the lake's `api_keys` table
//! (`fraudlake_pipeline::keys` says why and how). A running server picks up a new or revoked
//! key on its next reload poll (`serve --reload-secs`).

use anyhow::Result;
use clap::Subcommand;
use fraudlake_pipeline::keys::{self, Scope};

use crate::config::Settings;
use crate::output::{print_rows, Format};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; its token is printed once and stored nowhere (only its sha256 is kept).
    Create {
        /// What the key may do: score, label, admin (comma-separated).
        #[arg(long, value_name = "SCOPES")]
        scope: String,
        /// A label for people (who or what uses the key).
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Every key with its scopes and creation/revocation (never a secret).
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Revoke a key by its id; servers refuse it after their next reload poll.
    Revoke {
        key_id: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

pub async fn run(cmd: KeysCommand, settings: &Settings) -> Result<u8> {
    let lake = settings.open_lake()?;
    match cmd {
        KeysCommand::Create {
            scope,
            name,
            format,
        } => {
            let scopes = Scope::parse_list(&scope)?;
            let key = keys::create(&lake, &scopes, &name).await?;
            if format == Format::Table {
                eprintln!(
                    "created API key {} (scopes {}); the token below is shown only now:",
                    key.key_id, key.scopes
                );
                println!("{}", key.token);
            } else {
                print_rows(&[key], format)?;
            }
        }
        KeysCommand::List { format } => {
            let list = keys::list(&lake).await?;
            if list.is_empty() && format == Format::Table {
                eprintln!("no API keys in {}: create one with `fraudlake keys create --scope score,label`", lake.root());
            }
            print_rows(&list, format)?;
        }
        KeysCommand::Revoke { key_id, format } => {
            let key = keys::revoke(&lake, &key_id).await?;
            print_rows(&[key], format)?;
        }
    }
    Ok(0)
}
