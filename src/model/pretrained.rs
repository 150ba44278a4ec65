//! Pretrained weights from a safetensors file (a PyTorch `state_dict` exported with
//! `safetensors.torch.save_file`, or another candle model's) into a component of a model.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::{Component, MultiTaskModel};
use crate::error::{Error, Result};

/// One rule of a [`PretrainedOptions`] key mapping, applied to every key of the file in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRule {
    /// Keeps only the keys under `prefix.`, without it (`fc` takes `fc.weight` as `weight`);
    /// every other key is ignored. Selects one part of a whole-model file.
    Select(String),
    /// Removes a leading `prefix.` (`backbone.` from `backbone.conv1.weight`); keys without it
    /// are kept as they are.
    StripPrefix(String),
    /// Puts `prefix.` in front of every key.
    AddPrefix(String),
    /// Replaces every occurrence of `from` by `to` inside keys (`.gamma` by `.weight`).
    Replace {
        /// Text to find.
        from: String,
        /// Its replacement.
        to: String,
    },
    /// Renames the key `from` (whole key) to `to`.
    Rename {
        /// Key in the file (after the rules before this one).
        from: String,
        /// Name in the model.
        to: String,
    },
}

impl KeyRule {
    /// The key after this rule; `None` when the rule drops it.
    fn apply(&self, key: String) -> Option<String> {
        Some(match self {
            KeyRule::Select(p) => key.strip_prefix(&format!("{p}."))?.to_string(),
            KeyRule::StripPrefix(p) => match key.strip_prefix(&format!("{p}.")) {
                Some(rest) => rest.to_string(),
                None => key,
            },
            KeyRule::AddPrefix(p) => format!("{p}.{key}"),
            KeyRule::Replace { from, to } => key.replace(from.as_str(), to),
            KeyRule::Rename { from, to } if *from == key => to.clone(),
            KeyRule::Rename { .. } => key,
        })
    }
}

/// How [`MultiTaskModel::load_pretrained`] maps and checks a file's keys.
///
/// Keys are compared with the component's parameter and buffer names relative to the
/// component (`conv1.weight` for the encoder's `encoder.conv1.weight`), after the rules.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `rules` | none | key mapping, applied in order |
/// | `strict` | true | every model entry loaded and every file key used, or an error and nothing changed |
/// | `ignore` | `["num_batches_tracked"]` | mapped keys to leave out: a whole key, a prefix (`fc` drops `fc.*`) or a last component |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PretrainedOptions {
    /// Key mapping.
    pub rules: Vec<KeyRule>,
    /// Strict (true) or partial (false) loading.
    pub strict: bool,
    /// Keys (after mapping) to ignore.
    pub ignore: Vec<String>,
}

impl Default for PretrainedOptions {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            strict: true,
            ignore: vec!["num_batches_tracked".to_string()],
        }
    }
}

impl PretrainedOptions {
    /// Strict loading, no mapping (the default).
    pub fn strict() -> Self {
        Self::default()
    }

    /// Partial loading: loads every layer the file has whole and of the right shapes, skips
    /// the others (reported), never leaves a layer half-loaded.
    pub fn partial() -> Self {
        Self {
            strict: false,
            ..Self::default()
        }
    }

    /// Adds a [`KeyRule::Select`].
    pub fn select(mut self, prefix: &str) -> Self {
        self.rules.push(KeyRule::Select(prefix.to_string()));
        self
    }

    /// Adds a [`KeyRule::StripPrefix`].
    pub fn strip_prefix(mut self, prefix: &str) -> Self {
        self.rules.push(KeyRule::StripPrefix(prefix.to_string()));
        self
    }

    /// Adds a [`KeyRule::AddPrefix`].
    pub fn add_prefix(mut self, prefix: &str) -> Self {
        self.rules.push(KeyRule::AddPrefix(prefix.to_string()));
        self
    }

    /// Adds a [`KeyRule::Replace`].
    pub fn replace(mut self, from: &str, to: &str) -> Self {
        self.rules.push(KeyRule::Replace {
            from: from.to_string(),
            to: to.to_string(),
        });
        self
    }

    /// Adds a [`KeyRule::Rename`].
    pub fn rename(mut self, from: &str, to: &str) -> Self {
        self.rules.push(KeyRule::Rename {
            from: from.to_string(),
            to: to.to_string(),
        });
        self
    }

    /// Ignores mapped keys equal to `pattern`, under it (`pattern.*`) or ending in it.
    pub fn ignore(mut self, pattern: &str) -> Self {
        self.ignore.push(pattern.to_string());
        self
    }

    /// The model name a file key maps to; `None` when a [`KeyRule::Select`] drops it.
    pub fn map_key(&self, key: &str) -> Option<String> {
        self.rules
            .iter()
            .try_fold(key.to_string(), |k, rule| rule.apply(k))
    }

    fn is_ignored(&self, key: &str) -> bool {
        let last = key.rsplit('.').next().unwrap_or(key);
        self.ignore
            .iter()
            .any(|p| key == p || last == p || key.starts_with(&format!("{p}.")))
    }
}

/// A model entry whose shape differs from the file's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// Name in the model (relative to the component).
    pub name: String,
    /// Key in the file.
    pub file_key: String,
    /// Shape in the file.
    pub file_shape: Vec<usize>,
    /// Shape in the model.
    pub model_shape: Vec<usize>,
}

/// What [`MultiTaskModel::load_pretrained`] did, names relative to the component, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The file read.
    pub file: String,
    /// The component loaded into (its prefix, such as `encoder`).
    pub component: String,
    /// Entries loaded.
    pub loaded: Vec<String>,
    /// Model entries the file does not have (after mapping).
    pub missing: Vec<String>,
    /// File keys (as in the file) that name nothing in the model.
    pub unexpected: Vec<String>,
    /// File keys left out by the `ignore` patterns.
    pub ignored: Vec<String>,
    /// Entries whose shapes differ.
    pub mismatched: Vec<ShapeMismatch>,
    /// File keys that are not floating point (model entries are f32).
    pub wrong_dtype: Vec<(String, String)>,
    /// Layers (a name without its last component) not loaded in partial mode because one of
    /// their entries is missing or mismatched.
    pub skipped_layers: Vec<String>,
}

impl LoadReport {
    /// True when everything in the component was loaded and every file key was used.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.mismatched.is_empty()
            && self.wrong_dtype.is_empty()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} into {}: {} loaded, {} missing, {} unexpected, {} shape mismatches, {} ignored",
            self.file,
            self.component,
            self.loaded.len(),
            self.missing.len(),
            self.unexpected.len(),
            self.mismatched.len(),
            self.ignored.len()
        )?;
        for m in &self.mismatched {
            write!(
                f,
                "\n  shape: {} (file key {}) is {:?} in the file, {:?} in the model",
                m.name, m.file_key, m.file_shape, m.model_shape
            )?;
        }
        for (k, d) in &self.wrong_dtype {
            write!(
                f,
                "\n  dtype: {k} is {d} in the file; only f32, f16, bf16 and f64 convert"
            )?;
        }
        for m in &self.missing {
            write!(f, "\n  missing from the file: {m}")?;
        }
        for u in &self.unexpected {
            write!(f, "\n  in the file, not in the model: {u}")?;
        }
        for l in &self.skipped_layers {
            write!(f, "\n  layer not loaded (incomplete in the file): {l}")?;
        }
        Ok(())
    }
}

fn layer_of(name: &str) -> &str {
    name.rsplit_once('.').map_or("", |(layer, _)| layer)
}

impl MultiTaskModel {
    /// Loads pretrained weights from the safetensors file `path` into `component` (the
    /// encoder, one encoder layer, a head or a stem), mapping the file's keys by
    /// `options.rules`. f16, bf16 and f64 tensors are converted to f32.
    ///
    /// In strict mode every parameter and buffer of the component must be in the file with its
    /// shape and every file key must name one (after `ignore`); otherwise nothing is changed
    /// and the error ([`Error::PretrainedMismatch`]) carries the full [`LoadReport`]. In
    /// partial mode the layers the file has whole are loaded and the rest left as they are;
    /// a layer with one missing or mismatched entry is not loaded at all.
    ///
    /// ```no_run
    /// # use candle_mtl::model::{Component, MultiTaskModel, PretrainedOptions};
    /// # fn f(model: &MultiTaskModel) -> candle_mtl::Result<()> {
    /// // torchvision's resnet18 state_dict, its classifier dropped:
    /// let report = model.load_pretrained(
    ///     &Component::Encoder,
    ///     "resnet18.safetensors",
    ///     &PretrainedOptions::strict().ignore("fc"),
    /// )?;
    /// println!("{report}");
    /// # Ok(()) }
    /// ```
    pub fn load_pretrained(
        &self,
        component: &Component,
        path: impl AsRef<Path>,
        options: &PretrainedOptions,
    ) -> Result<LoadReport> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let file = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| Error::malformed(path, format!("not a readable safetensors file: {e}")))?;
        let vars = self.component_vars(component);
        if vars.is_empty() {
            return Err(Error::config(
                "component",
                format!("{component:?}"),
                "has no parameters to load into",
            ));
        }
        let mut report = LoadReport {
            file: path.display().to_string(),
            component: component.prefix(),
            ..LoadReport::default()
        };
        // Mapped name -> (file key, tensor), in key order.
        let mut mapped: BTreeMap<String, (String, Tensor)> = BTreeMap::new();
        let mut keys: Vec<&String> = file.keys().collect();
        keys.sort();
        for key in keys {
            let Some(name) = options.map_key(key).filter(|n| !options.is_ignored(n)) else {
                report.ignored.push(key.clone());
                continue;
            };
            if let Some((first, _)) = mapped.get(&name) {
                return Err(Error::malformed(
                    path,
                    format!("keys {first} and {key} both map to {name}; adjust the key rules"),
                ));
            }
            mapped.insert(name, (key.clone(), file[key].clone()));
        }
        let model_names: BTreeSet<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
        for (name, (key, _)) in &mapped {
            if !model_names.contains(name.as_str()) {
                report.unexpected.push(key.clone());
            }
        }
        let mut to_load = Vec::new();
        let mut incomplete_layers = BTreeSet::new();
        for (name, var) in &vars {
            match mapped.get(name) {
                None => {
                    report.missing.push(name.clone());
                    incomplete_layers.insert(layer_of(name).to_string());
                }
                Some((key, t))
                    if !matches!(
                        t.dtype(),
                        DType::F32 | DType::F16 | DType::BF16 | DType::F64
                    ) =>
                {
                    report
                        .wrong_dtype
                        .push((key.clone(), format!("{:?}", t.dtype())));
                    incomplete_layers.insert(layer_of(name).to_string());
                }
                Some((key, t)) if t.dims() != var.dims() => {
                    report.mismatched.push(ShapeMismatch {
                        name: name.clone(),
                        file_key: key.clone(),
                        file_shape: t.dims().to_vec(),
                        model_shape: var.dims().to_vec(),
                    });
                    incomplete_layers.insert(layer_of(name).to_string());
                }
                Some((_, t)) => to_load.push((name.clone(), var.clone(), t.clone())),
            }
        }
        if options.strict && !report.is_complete() {
            return Err(Error::PretrainedMismatch(Box::new(report)));
        }
        // Convert everything first: a failure here leaves the model untouched.
        let mut converted = Vec::with_capacity(to_load.len());
        for (name, var, t) in to_load {
            if incomplete_layers.contains(layer_of(&name)) {
                continue;
            }
            let value = t.to_dtype(DType::F32)?.to_device(var.device())?;
            converted.push((name, var, value));
        }
        for (name, var, value) in converted {
            var.set(&value)?;
            report.loaded.push(name);
        }
        report.skipped_layers = incomplete_layers.into_iter().collect();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_map_keys_in_order() {
        let o = PretrainedOptions::partial()
            .strip_prefix("module")
            .replace(".gamma", ".weight")
            .rename("head.w", "linear.weight")
            .add_prefix("backbone");
        assert_eq!(
            o.map_key("module.bn.gamma").as_deref(),
            Some("backbone.bn.weight")
        );
        assert_eq!(
            o.map_key("head.w").as_deref(),
            Some("backbone.linear.weight")
        );
        let head = PretrainedOptions::strict()
            .select("fc")
            .add_prefix("linear");
        assert_eq!(head.map_key("fc.weight").as_deref(), Some("linear.weight"));
        assert_eq!(head.map_key("layer1.0.conv1.weight"), None);
        assert!(o.is_ignored("layer1.0.bn1.num_batches_tracked"));
        let o = o.ignore("fc");
        assert!(o.is_ignored("fc.weight") && !o.is_ignored("fcx.weight"));
    }
}
