//! The benchmark corpus: valid wheels and sdists made deterministically from a seed.
//!
//! About 200 files and 400 MB: one project with 50 files (25 releases, a wheel and an sdist
//! each) for the "many files" simple page, then 75 projects with one wheel and one sdist each,
//! whose wheel sizes fall in tiers (8 of 30–50 MB, one of 10 MB, 19 of 1–5 MB, the rest
//! 4–300 KB).
//! With `--huge`, also one wheel of 1 GiB in its own manifest, for the memory run.
//! A directory whose manifest records the same seed and layout is reused as it is.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use wharf_archive::MultiHasher;
use wharf_e2e::dist::{Dist, SdistBuilder, WheelBuilder};

/// Bumped whenever the layout below changes, so a cached corpus is regenerated.
const LAYOUT: u32 = 1;
const MANY_FILES_PROJECT: &str = "bench-many";
const MANY_FILES_RELEASES: usize = 25;
const PROJECTS: usize = 75;
const HUGE_WHEEL_BYTES: u64 = 1 << 30;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Directory of the corpus (files/ and files.json; huge/ and huge.json).
    #[arg(long)]
    dir: PathBuf,
    /// Seed of the file sizes and contents.
    #[arg(long, default_value_t = 20261126)]
    seed: u64,
    /// Also make the 1 GiB wheel (huge.json).
    #[arg(long)]
    huge: bool,
}

/// A corpus: which seed and layout made it, and its files in upload order.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Manifest {
    seed: u64,
    layout: u32,
    pub(crate) files: Vec<CorpusFile>,
}

/// One distribution file of the corpus, with what the upload form needs.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CorpusFile {
    pub(crate) path: PathBuf,
    pub(crate) filename: String,
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) filetype: String,
    pub(crate) pyversion: String,
    pub(crate) size: u64,
    pub(crate) sha256: String,
    pub(crate) blake2_256: String,
}

impl Manifest {
    /// Reads a manifest written by `corpus`.
    pub(crate) fn read(path: &Path) -> anyhow::Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read the manifest {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))
    }

    fn total_bytes(&self) -> u64 {
        self.files.iter().map(|file| file.size).sum()
    }
}

/// What `corpus` reports.
#[derive(Debug, Serialize)]
struct Report {
    manifest: PathBuf,
    files: usize,
    bytes: u64,
    wheels: usize,
    sdists: usize,
    largest: u64,
    smallest: u64,
    reused: bool,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<serde_json::Value> {
    let mut reports = vec![ensure(&args.dir, "files", args.seed, plan)?];
    if args.huge {
        reports.push(ensure(&args.dir, "huge", args.seed, |_| {
            vec![Planned::Wheel {
                name: "bench-huge".to_owned(),
                version: "1.0.0".to_owned(),
                padding: HUGE_WHEEL_BYTES,
            }]
        })?);
    }
    Ok(serde_json::to_value(reports)?)
}

/// One file to make.
#[derive(Debug, PartialEq, Eq)]
enum Planned {
    Wheel {
        name: String,
        version: String,
        padding: u64,
    },
    Sdist {
        name: String,
        version: String,
        padding: u64,
    },
}

/// The corpus layout for a seed (see the module documentation).
fn plan(rng: &mut SplitMix64) -> Vec<Planned> {
    let mut files = Vec::new();
    for release in 0..MANY_FILES_RELEASES {
        let version = format!("1.0.{release}");
        files.push(Planned::Wheel {
            name: MANY_FILES_PROJECT.to_owned(),
            version: version.clone(),
            padding: rng.log_uniform(2_000, 60_000),
        });
        files.push(Planned::Sdist {
            name: MANY_FILES_PROJECT.to_owned(),
            version,
            padding: rng.log_uniform(1_000, 40_000),
        });
    }
    for project in 0..PROJECTS {
        let name = format!("bench-pkg-{project:03}");
        let version = format!("{}.{}.0", 1 + project % 3, rng.below(20));
        let wheel_bytes = match project {
            0..8 => rng.log_uniform(30_000_000, 50_000_000),
            // The "10 MB file" of the download scenario.
            8 => 10_000_000,
            9..28 => rng.log_uniform(1_000_000, 5_000_000),
            _ => rng.log_uniform(4_000, 300_000),
        };
        files.push(Planned::Wheel {
            name: name.clone(),
            version: version.clone(),
            padding: wheel_bytes,
        });
        files.push(Planned::Sdist {
            name,
            version,
            padding: rng.log_uniform(2_000, 200_000),
        });
    }
    // Large and small files interleaved, as a real publish stream is.
    rng.shuffle(&mut files);
    files
}

/// Makes the files of `set` in `dir/<set>/`, listed in `dir/<set>.json`, unless that manifest
/// has the same seed and layout and its files are there already.
fn ensure(
    dir: &Path,
    set: &str,
    seed: u64,
    layout: impl FnOnce(&mut SplitMix64) -> Vec<Planned>,
) -> anyhow::Result<Report> {
    let manifest_path = dir.join(format!("{set}.json"));
    if let Ok(manifest) = Manifest::read(&manifest_path)
        && manifest.seed == seed
        && manifest.layout == LAYOUT
        && manifest
            .files
            .iter()
            .all(|file| std::fs::metadata(&file.path).is_ok_and(|meta| meta.len() == file.size))
    {
        return Ok(report(manifest_path, &manifest, true));
    }
    let files_dir = dir.join(set);
    if files_dir.exists() {
        std::fs::remove_dir_all(&files_dir)
            .with_context(|| format!("remove the stale {}", files_dir.display()))?;
    }
    std::fs::create_dir_all(&files_dir)
        .with_context(|| format!("create {}", files_dir.display()))?;
    let mut rng = SplitMix64(seed);
    let mut files = Vec::new();
    for (index, planned) in layout(&mut rng).into_iter().enumerate() {
        let greeting = format!("bench corpus, seed {seed}, file {index}");
        let (dist, path) = match planned {
            Planned::Wheel {
                name,
                version,
                padding,
            } => {
                let builder = WheelBuilder::new(&name, &version)
                    .padding(usize::try_from(padding)?)
                    .greeting(&greeting);
                let path = files_dir.join(builder.filename());
                let mut out = BufWriter::new(File::create(&path)?);
                let dist = builder.write_to(&mut out)?;
                out.flush()?;
                (dist, path)
            }
            Planned::Sdist {
                name,
                version,
                padding,
            } => {
                let dist = SdistBuilder::new(&name, &version)
                    .padding(usize::try_from(padding)?)
                    .greeting(&greeting)
                    .build();
                let path = files_dir.join(&dist.filename);
                std::fs::write(&path, &dist.bytes)?;
                (dist, path)
            }
        };
        files.push(describe(dist, path)?);
    }
    let manifest = Manifest {
        seed,
        layout: LAYOUT,
        files,
    };
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest)?)
        .with_context(|| format!("write {}", manifest_path.display()))?;
    Ok(report(manifest_path, &manifest, false))
}

/// The manifest entry of the file `dist` written at `path` (hashed from disk, in chunks).
fn describe(dist: Dist, path: PathBuf) -> anyhow::Result<CorpusFile> {
    let mut file = File::open(&path)?;
    let mut hasher = MultiHasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let count = file.read(&mut buffer)?;
        if count == 0 {
            break;
        }
        hasher.update(&buffer[..count]);
    }
    let size = hasher.bytes_hashed();
    let digests = hasher.finalize();
    Ok(CorpusFile {
        path: std::path::absolute(&path)?,
        filename: dist.filename,
        name: dist.name,
        version: dist.version,
        filetype: dist.filetype.to_owned(),
        pyversion: dist.pyversion.to_owned(),
        size,
        sha256: digests.sha256_hex(),
        blake2_256: digests.blake2_256_hex(),
    })
}

fn report(manifest_path: PathBuf, manifest: &Manifest, reused: bool) -> Report {
    let sizes = manifest.files.iter().map(|file| file.size);
    Report {
        files: manifest.files.len(),
        bytes: manifest.total_bytes(),
        wheels: manifest
            .files
            .iter()
            .filter(|file| file.filetype == "bdist_wheel")
            .count(),
        sdists: manifest
            .files
            .iter()
            .filter(|file| file.filetype == "sdist")
            .count(),
        largest: sizes.clone().max().unwrap_or(0),
        smallest: sizes.min().unwrap_or(0),
        manifest: manifest_path,
        reused,
    }
}

/// SplitMix64: a tiny, well-known deterministic generator for the corpus plan.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform value in `0..bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    /// A value spread evenly on a log scale between `low` and `high`.
    fn log_uniform(&mut self, low: u64, high: u64) -> u64 {
        let unit = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        let (low, high) = ((low as f64).ln(), (high as f64).ln());
        (low + unit * (high - low)).exp() as u64
    }

    /// Fisher–Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for index in (1..items.len()).rev() {
            let other = self.below(index as u64 + 1) as usize;
            items.swap(index, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn padding(planned: &Planned) -> u64 {
        match planned {
            Planned::Wheel { padding, .. } | Planned::Sdist { padding, .. } => *padding,
        }
    }

    #[test]
    fn the_plan_is_the_seeds_and_has_the_issues_shape() {
        let plan = super::plan(&mut SplitMix64(7));
        assert_eq!(plan, super::plan(&mut SplitMix64(7)));
        assert_ne!(plan, super::plan(&mut SplitMix64(8)));
        assert_eq!(plan.len(), 200);
        let total: u64 = plan.iter().map(padding).sum();
        assert!((330_000_000..=470_000_000).contains(&total), "{total}");
        assert!(plan.iter().map(padding).max() <= Some(50_000_000));
        assert!(plan.iter().map(padding).min() >= Some(1_000));
        assert!(plan.iter().any(|file| padding(file) == 10_000_000));
        let many = plan
            .iter()
            .filter(|file| matches!(file, Planned::Wheel { name, .. } | Planned::Sdist { name, .. } if name == MANY_FILES_PROJECT))
            .count();
        assert_eq!(many, 50);
    }
}
