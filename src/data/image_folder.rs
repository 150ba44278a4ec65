//! [`ImageFolder`]: a class-per-folder image tree (`root/<class>/<image>`), one task.

use std::path::{Path, PathBuf};

use super::{Dataset, ImageOptions, Sample, Target, TargetInfo, TargetKind};
use crate::error::{Error, Result};

/// Images sorted into one folder per class, as torchvision's `ImageFolder` reads them: the
/// classes are the sub-folders of `root` in name order, their PNG and JPEG files (also in
/// name order) the samples, labelled for one task. Other files are ignored.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    task: String,
    classes: Vec<String>,
    files: Vec<(PathBuf, u32)>,
    shape: [usize; 3],
    options: ImageOptions,
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| Error::io(dir, e)))
        .collect::<Result<Vec<_>>>()?;
    entries.sort();
    Ok(entries)
}

impl ImageFolder {
    /// Reads the tree at `root`; its labels belong to task `task`. Refuses a tree without a
    /// class folder or without an image.
    pub fn open(
        root: impl AsRef<Path>,
        task: impl Into<String>,
        options: ImageOptions,
    ) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        options.validate()?;
        let mut classes = Vec::new();
        let mut files = Vec::new();
        for dir in sorted_entries(&root)?.into_iter().filter(|p| p.is_dir()) {
            let label = classes.len() as u32;
            classes.push(
                dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
            for file in sorted_entries(&dir)?
                .into_iter()
                .filter(|p| p.is_file() && is_image(p))
            {
                files.push((file, label));
            }
        }
        if classes.is_empty() {
            return Err(Error::malformed(
                &root,
                "has no class folders (root/<class>/<image>)",
            ));
        }
        let Some((first, _)) = files.first() else {
            return Err(Error::malformed(
                &root,
                "has class folders but no PNG or JPEG files",
            ));
        };
        let shape = options.resolve(first, &root.display().to_string())?;
        let options = ImageOptions {
            channels: Some(shape[0]),
            ..options
        };
        Ok(Self {
            root,
            task: task.into(),
            classes,
            files,
            shape,
            options,
        })
    }

    /// The class names (folder names), index = class.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
    }
    fn input_shape(&self) -> Vec<usize> {
        self.shape.to_vec()
    }
    fn targets(&self) -> Vec<TargetInfo> {
        vec![TargetInfo {
            name: self.task.clone(),
            kind: TargetKind::Classes,
        }]
    }
    fn get(&self, index: usize) -> Result<Sample> {
        let (file, label) = self.files.get(index).ok_or_else(|| {
            Error::DataMismatch(format!(
                "sample index {index} out of range for {} ({} images)",
                self.root.display(),
                self.files.len()
            ))
        })?;
        Ok(Sample {
            input: super::image_file::decode(file, self.shape, &self.options, &self.origin(index))?,
            targets: vec![Some(Target::Class(*label))],
        })
    }
    fn target(&self, index: usize, _target: usize) -> Result<Option<Target>> {
        Ok(self.files.get(index).map(|(_, l)| Target::Class(*l)))
    }
    fn origin(&self, index: usize) -> String {
        match self.files.get(index) {
            Some((_, l)) => format!(
                "class folder '{}' of {}",
                self.classes[*l as usize],
                self.root.display()
            ),
            None => format!("{} sample {index}", self.root.display()),
        }
    }
}
