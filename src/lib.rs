//! # weightreel
//!
//! Stream Hugging Face model weights tensor by tensor in bounded memory, lay parameter chunks
//! out along a Hilbert curve as 2-D frames, store each model as a lossless video reel (FFV1 and
//! uncompressed tracks) in a store with a SQLite registry, and answer "which stored models are
//! most like this one?".
//!
//! The data flows one way, one module per stage:
//!
//! | stage | module | what it does |
//! |---|---|---|
//! | source | [`source`] | files, the HF cache, the Hub over HTTP `Range`; headers; dtype → f32 |
//! | selection | [`roles`], [`selection`] | roles from a name table, `--layers`, `--include`, limits, sampling |
//! | stream | [`stream`] | push-style [`stream::Sink`] fed in bounded pieces, stoppable |
//! | inspect | [`inspect`] | header-only report of a model and a selection |
//! | frames | [`frames`] | Hilbert-curve frame layout, u16/lossless/u8 pixels, mean pyramid, statistics |
//! | fingerprint | [`fingerprint`] | a centred sample and statistics of every tensor, independent of encode settings |
//! | reels | [`reel`] | one lossless Matroska video file per model, with its metadata attached |
//! | pictures | [`picture`] | a frame as a picture for people: scales, colour bar, labels, rows streamed |
//! | store | [`store`] | reels and the SQLite registry: entries, frames, fingerprints |
//! | search | [`search`] | related models from fingerprints: `search`, `compare`, families |
//! | gallery | `serve` (feature `serve`) | a local web face over store and search, like the CLI |
//! | queue | `queue` (feature `queue`) | jobs in PostgreSQL that many workers claim with leases |
//!
//! No module reaches back up the chain; the CLI only calls the library.

pub mod analysis;
pub mod decode;
pub mod encode;
pub mod error;
pub mod fingerprint;
pub mod frames;
pub mod inspect;
pub mod output;
pub mod picture;
pub mod progress;
#[cfg(feature = "queue")]
pub mod queue;
pub mod reel;
pub mod report;
pub mod roles;
pub mod search;
pub mod selection;
#[cfg(feature = "serve")]
pub mod serve;
pub mod source;
pub mod store;
pub mod stream;
pub mod text;

pub use error::{Error, Result};
