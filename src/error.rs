//! The crate's error type.
//!
//! Every fallible function returns [`Result<T>`]. Errors carry the values at fault (the file,
//! the task, the sizes that disagree) so that a message alone tells the user what to fix.

use std::path::PathBuf;

/// Everything that can go wrong in candle-mtl.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed inside candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A dataset directory or file is missing.
    #[error("{what} not found at {path}\n{hint}")]
    DataNotFound {
        /// What was looked for ("MNIST directory", "file", ...).
        what: String,
        /// Where it was looked for.
        path: PathBuf,
        /// How to get the files.
        hint: String,
    },

    /// A dataset could not be downloaded; the message says what to fetch by hand and where.
    #[error("could not fetch {dataset}: {reason}\nTo install it by hand, {instructions}")]
    Download {
        /// The dataset.
        dataset: String,
        /// What went wrong.
        reason: String,
        /// Files expected (with checksums and URLs) and the directory to put them in.
        instructions: String,
    },

    /// A data file exists but its content is not what its format requires.
    #[error("{path}: {problem}")]
    MalformedFile {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong, with expected and found values.
        problem: String,
    },

    /// A row of a manifest (a CSV file listing samples) is wrong: the file, the 1-based line
    /// and, where one is at fault, the column.
    #[error(
        "{}: line {line}{}: {problem}",
        manifest.display(),
        column.as_ref().map(|c| format!(", column '{c}'")).unwrap_or_default()
    )]
    BadRow {
        /// The manifest.
        manifest: PathBuf,
        /// Line in the manifest, 1-based (the header is line 1).
        line: u64,
        /// The column at fault, when one is.
        column: Option<String>,
        /// What is wrong, with the value found.
        problem: String,
    },

    /// A sample's file (an image listed by a manifest or found in a folder tree) could not
    /// be read or decoded.
    #[error("{}: {problem} (sample listed at {origin})", file.display())]
    BadSampleFile {
        /// The file at fault.
        file: PathBuf,
        /// Where the sample was listed (`train.csv line 12`, `folder cat/`).
        origin: String,
        /// What went wrong.
        problem: String,
    },

    /// A task head expects a different input size than the encoder produces.
    #[error(
        "head of task '{task}' takes inputs of size {head_input}, \
         but the encoder produces representations of size {encoder_output}"
    )]
    HeadInputMismatch {
        /// The task whose head does not fit.
        task: String,
        /// Input size the head was built for.
        head_input: usize,
        /// Output size of the encoder.
        encoder_output: usize,
    },

    /// The weighting strategy cannot work with the model or trainer setup.
    #[error("weighting strategy '{strategy}' cannot be used here: {reason}")]
    IncompatibleWeighting {
        /// Name of the strategy.
        strategy: String,
        /// What the strategy needs and what the setup offers.
        reason: String,
    },

    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {field} = {value}: {reason}")]
    InvalidConfig {
        /// The field at fault (for example `batch_size`).
        field: String,
        /// Its value, formatted.
        value: String,
        /// What it must be.
        reason: String,
    },

    /// Data handed to the trainer does not match the tasks it was built for.
    #[error("data mismatch: {0}")]
    DataMismatch(String),

    /// A task's loss or gradient is NaN or infinite.
    #[error("non-finite {quantity} for task '{task}' at step {step}: {value}")]
    NonFinite {
        /// `loss` or `gradient`.
        quantity: &'static str,
        /// The task at fault.
        task: String,
        /// Global step number (0-based).
        step: u64,
        /// The value seen.
        value: f64,
    },

    /// A strategy's hyper-parameter is out of range; refused when the strategy is built (its
    /// constructor returns this), or when a trainer is built for a value set afterwards.
    #[error(
        "weighting strategy '{strategy}': hyper-parameter {field} = {value} is invalid: \
         it must be {rule}"
    )]
    InvalidHyperParameter {
        /// Name of the strategy.
        strategy: String,
        /// The hyper-parameter at fault (for example `reg_eps`).
        field: &'static str,
        /// Its value, formatted.
        value: String,
        /// What it must be (for example `finite and > 0`).
        rule: &'static str,
    },

    /// Pretrained weights do not fit the component they were loaded into (strict mode); the
    /// report lists every missing, unexpected and mismatched key. Nothing was changed.
    #[error("pretrained weights do not fit: {0}")]
    PretrainedMismatch(Box<crate::model::LoadReport>),

    /// A weighting strategy returned a decision the trainer cannot apply.
    #[error("weighting strategy '{strategy}' returned an invalid decision: {reason}")]
    InvalidDecision {
        /// Name of the strategy.
        strategy: String,
        /// What is wrong with the decision.
        reason: String,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A malformed-file error for `path`.
    pub fn malformed(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::MalformedFile {
            path: path.into(),
            problem: problem.into(),
        }
    }

    /// An invalid-configuration error.
    pub fn config(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidConfig {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Result type of the crate.
pub type Result<T> = std::result::Result<T, Error>;
