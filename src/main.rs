//! The `weightreel` command line: a thin layer over the library.
//!
//! Two forms call the same code: subcommands (`weightreel inspect MODEL`, `encode`, `list`…)
//! and the user guide's flag form (`weightreel --model M --stream …`, `--list-models`,
//! `--statistics`, `--models A B …`).

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use weightreel::error::{Error, Result};
use weightreel::inspect::Report;
use weightreel::selection::{parse_regex, parse_roles, SampleMode, Selection};
use weightreel::source::{Model, OpenOptions};

#[derive(Parser, Debug)]
#[command(
    name = "weightreel",
    version,
    about = "Stream Hugging Face model weights into lossless Hilbert-curve video reels",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    guide: GuideArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Report a model's tensors, dtypes, roles and layers, and what a selection would read (headers only)
    Inspect {
        /// A .safetensors file, a model directory, or a Hub repo id (org/name)
        model: String,
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        select: SelectArgs,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

/// The user guide's flag form.
#[derive(Args, Debug, Default)]
struct GuideArgs {
    /// Model to stream-encode (file, directory or Hub repo id)
    #[arg(long, value_name = "MODEL")]
    model: Option<String>,
    /// Stream the model tensor by tensor (always on; accepted for the guide's commands)
    #[arg(long)]
    stream: bool,
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    select: SelectArgs,
}

#[derive(Args, Debug, Default, Clone)]
struct SourceArgs {
    /// Branch, tag or commit of a Hub repo
    #[arg(long, default_value = "main", value_name = "REV")]
    revision: String,
    /// Never use the network (like HF_HUB_OFFLINE=1)
    #[arg(long)]
    offline: bool,
    /// Hub token (default: $HF_TOKEN); never printed or stored
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
}

impl SourceArgs {
    fn options(&self) -> OpenOptions {
        OpenOptions {
            revision: self.revision.clone(),
            offline: self.offline,
            token: self.token.clone(),
            ..OpenOptions::default()
        }
        .with_env()
    }
}

#[derive(Args, Debug, Default, Clone)]
struct SelectArgs {
    /// Roles to take: embedding, attention, mlp, norm, head, other, all (aliases: attn, ffn, embeddings, layernorm…)
    #[arg(long, num_args = 1.., value_name = "ROLE")]
    layers: Vec<String>,
    /// Take only tensors whose name matches this regular expression
    #[arg(long, value_name = "REGEX")]
    include: Option<String>,
    /// Drop tensors whose name matches this regular expression
    #[arg(long, value_name = "REGEX")]
    exclude: Option<String>,
    /// Take exactly N values (all, if fewer are selected)
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_positive)]
    max_params: Option<u64>,
    /// How --max-params picks values: stratified (spread over all tensors) or head (first N)
    #[arg(long, default_value = "stratified", value_name = "HOW")]
    sample: String,
}

impl SelectArgs {
    fn selection(&self) -> Result<Selection> {
        Ok(Selection {
            roles: parse_roles(&self.layers)?,
            include: self
                .include
                .as_deref()
                .map(|p| parse_regex("--include", p))
                .transpose()?,
            exclude: self
                .exclude
                .as_deref()
                .map(|p| parse_regex("--exclude", p))
                .transpose()?,
            max_params: self.max_params,
            sample: SampleMode::parse(&self.sample)?,
        })
    }
}

/// A whole number ≥ 1, with a message that states the valid range.
fn parse_positive(text: &str) -> std::result::Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(0) => Err("0 is out of range (expected a whole number >= 1)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{text}' is not a whole number >= 1")),
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Inspect {
            model,
            source,
            select,
            json,
        }) => {
            let selection = select.selection()?;
            let model = Model::open(&model, &source.options())?;
            let report = Report::new(&model, &selection);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("report serializes")
                );
            } else {
                print!("{}", report.to_text());
            }
            Ok(())
        }
        None => run_guide(cli.guide),
    }
}

fn run_guide(guide: GuideArgs) -> Result<()> {
    match guide.model {
        Some(_) => Err(Error::invalid(
            "--model",
            "",
            "a subcommand; encoding is not built yet",
        )),
        None => Err(Error::invalid(
            "arguments",
            "(none)",
            "a subcommand (inspect) or --model M --stream; see --help",
        )),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error names the thing and the problem.
            let text = err.to_string().replace('\n', " ");
            eprintln!("error: {text}");
            ExitCode::FAILURE
        }
    }
}
