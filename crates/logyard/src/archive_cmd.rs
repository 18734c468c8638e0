//! `logyard archive ls | get | verify`: the raw archive from the command line.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;

use logyard_core::StreamName;
use logyard_storage::Storage;
use logyard_storage::archive::{Archive, BundleRef};

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// List bundles (oldest first), or the members of one bundle.
    Ls {
        /// A bundle (its key or id): list its members instead.
        bundle: Option<String>,
        /// Only this stream's bundles.
        #[arg(long)]
        stream: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write one member's original bytes to a file or stdout (one ranged read, streamed and
    /// checked against its SHA-256; exits non-zero on damage).
    Get {
        /// The bundle (its key or id).
        bundle: String,
        /// The member's name, as `ls BUNDLE` prints it.
        member: String,
        /// Write here instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Pack files and directories into one seekable tar.zst bundle (what `logyard upload`
    /// sends for many files), and write its index beside it.
    Pack {
        /// Files and directories.
        #[arg(required = true)]
        paths: Vec<String>,
        /// The bundle to write; its index goes to the same name with `.index.json`.
        #[arg(short, long)]
        output: PathBuf,
        /// zstd level.
        #[arg(long, default_value_t = 3)]
        level: i32,
        /// Decompressed bytes per zstd frame (0: one frame per file).
        #[arg(long, default_value_t = 1 << 20)]
        frame_bytes: u64,
    },
    /// Check every member's SHA-256 (and the bundles' structure); exits non-zero on damage.
    Verify {
        /// Bundles to check (keys or ids); default every bundle.
        bundles: Vec<String>,
        /// Only this stream's bundles.
        #[arg(long)]
        stream: Option<String>,
    },
}

/// `pack`, which needs no storage.
pub async fn pack(paths: Vec<String>, output: PathBuf, level: i32, frame_bytes: u64) -> anyhow::Result<()> {
    let (index, output) = tokio::task::spawn_blocking(move || {
        crate::upload_cmd::pack(&paths, &output, level, frame_bytes).map(|i| (i, output))
    })
    .await??;
    println!("{}\t{} members\t{} bytes", output.display(), index.members.len(), index.bytes);
    Ok(())
}

pub async fn run(command: ArchiveCommand, storage: Storage) -> anyhow::Result<()> {
    let archive = Archive::new(storage);
    match command {
        ArchiveCommand::Pack { paths, output, level, frame_bytes } => pack(paths, output, level, frame_bytes).await?,
        ArchiveCommand::Ls { bundle: None, stream, json } => {
            let bundles = archive.list(stream_filter(stream)?.as_ref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&bundles)?);
            } else {
                for b in &bundles {
                    println!("{}\t{}", b.key, b.bytes);
                }
            }
        }
        ArchiveCommand::Ls { bundle: Some(bundle), json, .. } => {
            let bundle = find(&archive, &bundle).await?;
            let index = archive.index(&bundle.key).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&index.members)?);
            } else {
                for m in &index.members {
                    println!("{}\t{}\t{}", m.name, m.size, m.sha256);
                }
            }
        }
        ArchiveCommand::Get { bundle, member, output } => {
            let bundle = find(&archive, &bundle).await?;
            // Streamed: the member is written as it is decompressed and checked at its end, so
            // a damaged member fails the command after its output started (a file is removed).
            match output {
                Some(path) => {
                    let file = std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
                    let written = archive.member(&bundle.key, &member, BufWriter::with_capacity(1 << 20, file)).await;
                    let flushed = written
                        .map_err(anyhow::Error::from)
                        .and_then(|(_, mut out)| out.flush().with_context(|| format!("writing {}", path.display())));
                    if let Err(e) = flushed {
                        let _ = std::fs::remove_file(&path);
                        return Err(e);
                    }
                }
                None => {
                    let out = BufWriter::with_capacity(1 << 20, std::io::stdout());
                    let (_, mut out) = archive.member(&bundle.key, &member, out).await?;
                    out.flush()?;
                }
            }
        }
        ArchiveCommand::Verify { bundles, stream } => {
            let targets = if bundles.is_empty() {
                archive.list(stream_filter(stream)?.as_ref()).await?
            } else {
                let mut found = Vec::new();
                for b in &bundles {
                    found.push(find(&archive, b).await?);
                }
                found
            };
            let mut damaged = 0;
            for b in &targets {
                match archive.verify(&b.key).await {
                    Ok(n) => println!("ok\t{}\t{n} members", b.key),
                    Err(e) => {
                        damaged += 1;
                        println!("DAMAGED\t{}\t{e}", b.key);
                    }
                }
            }
            if damaged > 0 {
                bail!("{damaged} of {} bundles are damaged", targets.len());
            }
        }
    }
    Ok(())
}

fn stream_filter(stream: Option<String>) -> anyhow::Result<Option<StreamName>> {
    stream.map(|s| StreamName::new(&s)).transpose().map_err(Into::into)
}

/// A bundle by key, or by id alone.
async fn find(archive: &Archive, wanted: &str) -> anyhow::Result<BundleRef> {
    let bundles = archive.list(None).await?;
    bundles
        .into_iter()
        .find(|b| b.key == wanted || b.id == wanted)
        .with_context(|| format!("no bundle {wanted:?} in the archive (see `logyard archive ls`)"))
}
