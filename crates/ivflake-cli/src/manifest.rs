//! `ivflake manifest`: write (or `--check`) an index's checksum sidecar, so
//! the library can verify every list it fetches.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ivflake::{FetchConfig, IndexLocation, IvfIndex, Manifest, ManifestMode, OpenOptions};

use crate::util::{human_bytes, progress_bar, shell_quote};

/// The whole index is one streamed GET, and the HTTP client's request timeout
/// covers the body: allow about a terabyte at 12 MB/s. A dead connection is
/// caught sooner by the library's stall timeout on the stream.
const WHOLE_FILE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, clap::Args)]
pub struct ManifestArgs {
    /// The index: s3://…, gs://…, az://…, file:///… or a local path.
    pub uri: String,
    /// Build the manifest in memory and compare it with the existing sidecar
    /// instead of writing it; exit non-zero on any difference.
    #[arg(long)]
    pub check: bool,
}

pub async fn run(args: ManifestArgs) -> Result<()> {
    if args.uri.starts_with("memory://") {
        bail!(
            "{:?}: a memory:// store starts empty in every process; give a file or bucket URI",
            args.uri
        );
    }
    let fetch = FetchConfig {
        request_timeout: WHOLE_FILE_TIMEOUT,
        ..FetchConfig::default()
    };
    let location = IndexLocation::parse(&args.uri, &fetch).context("cannot open the index")?;
    // The existing sidecar is what this command replaces or checks, so open
    // must not use it (a stale one would only cost a GET and a warning).
    let options = OpenOptions {
        manifest: ManifestMode::Ignore,
        ..OpenOptions::default()
    };
    let index = IvfIndex::open_at(location.clone(), options)
        .await
        .context("cannot open the index")?;
    let sidecar = Manifest::sidecar_uri(index.uri());

    let started = Instant::now();
    let bar = progress_bar(index.file_len(), "hashing", "bytes");
    let built = index.build_manifest(|read| bar.set_position(read)).await;
    bar.finish_and_clear();
    let built = built.with_context(|| format!("hashing {} failed", args.uri))?;
    // An on-disk index's lists are in their data object, which gets a sidecar of its own.
    let data = index.lists_object().location.clone();
    let data_sidecar = Manifest::sidecar_uri(&data.uri);
    let built_data = if index.list_ranges().is_on_disk() {
        let bar = progress_bar(index.lists_object().size, "hashing the lists", "bytes");
        let built = index.build_data_manifest(|read| bar.set_position(read)).await;
        bar.finish_and_clear();
        built.with_context(|| format!("hashing {} failed", data.uri))?
    } else {
        None
    };
    let summary = |verb: &str| {
        format!(
            "{verb} {sidecar}: {} lists, {} hashed in {:.2} s",
            built.nlist(),
            human_bytes(built.file_len),
            started.elapsed().as_secs_f64()
        )
    };

    if args.check {
        let existing = stored_sidecar(&location, &sidecar, &args.uri).await?;
        if let Some(built_data) = &built_data {
            let existing = stored_sidecar(&data, &data_sidecar, &args.uri).await?;
            if let Some(difference) = first_difference(&existing, built_data) {
                bail!(
                    "the sidecar {data_sidecar} does not match the on-disk lists {}: {difference}. Either their bytes \
                     are damaged (restore them from a good copy) or they were replaced on purpose (then run \
                     `ivflake manifest {}` to record them)",
                    data.uri,
                    shell_quote(&args.uri)
                );
            }
        }
        if let Some(difference) = first_difference(&existing, &built) {
            // Either side may be wrong: the index's bytes may be what was
            // damaged, and rewriting the sidecar would bless them.
            bail!(
                "the sidecar {sidecar} does not match the index: {difference}. Either the index's bytes are \
                 damaged (restore the index from a good copy, or rebuild it) or the index was replaced on purpose \
                 after the sidecar was written (then, and only then, run `ivflake manifest {}` to record the new \
                 file)",
                shell_quote(&args.uri)
            );
        }
        println!("{}", summary("checked"));
    } else {
        if let Some(built_data) = &built_data {
            built_data
                .write(&data)
                .await
                .with_context(|| format!("cannot write the sidecar {data_sidecar}"))?;
            println!(
                "wrote {data_sidecar}: {} lists of the on-disk data file",
                built_data.nlist()
            );
        }
        built
            .write(&index.object().location)
            .await
            .with_context(|| format!("cannot write the sidecar {sidecar}"))?;
        println!("{}", summary("wrote"));
    }
    Ok(())
}

/// The sidecar stored at `location` (`sidecar` names it), which `--check`
/// compares; an error saying how to write one when there is none.
async fn stored_sidecar(location: &IndexLocation, sidecar: &str, uri: &str) -> Result<Manifest> {
    Manifest::read_at(location)
        .await
        .with_context(|| format!("cannot read the sidecar {sidecar}"))?
        .with_context(|| {
            format!(
                "there is no sidecar at {sidecar}; run `ivflake manifest {}` to write one",
                shell_quote(uri)
            )
        })
}

/// The first way the stored sidecar differs from the freshly built one.
fn first_difference(stored: &Manifest, built: &Manifest) -> Option<String> {
    if stored.file_len != built.file_len {
        return Some(format!(
            "it records a {}-byte file, the index has {} bytes",
            stored.file_len, built.file_len
        ));
    }
    if (stored.header_len, stored.header_xxh3) != (built.header_len, built.header_xxh3) {
        return Some(format!(
            "it records a {}-byte header hashing to {:016x}, the index's is {} bytes hashing to {:016x}",
            stored.header_len, stored.header_xxh3, built.header_len, built.header_xxh3
        ));
    }
    if stored.nlist() != built.nlist() {
        return Some(format!(
            "it records {} lists, the index has {}",
            stored.nlist(),
            built.nlist()
        ));
    }
    let (list, (s, b)) = stored
        .lists
        .iter()
        .zip(&built.lists)
        .enumerate()
        .find(|(_, (s, b))| s != b)?;
    Some(format!(
        "list {list} is recorded as {} bytes at {} hashing to {:016x}, the index has {} bytes at {} hashing to {:016x}",
        s.len, s.offset, s.xxh3, b.len, b.offset, b.xxh3
    ))
}

/// Bytes hashed so far, on stderr (hidden when stderr is not a terminal).
#[cfg(test)]
mod tests {
    use ivflake::ManifestList;

    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            file_len: 100,
            header_len: 10,
            header_xxh3: 7,
            lists: vec![
                ManifestList {
                    offset: 10,
                    len: 40,
                    xxh3: 1,
                },
                ManifestList {
                    offset: 50,
                    len: 50,
                    xxh3: 2,
                },
            ],
        }
    }

    #[test]
    fn names_the_first_difference() {
        let m = manifest();
        assert_eq!(first_difference(&m, &m), None);
        let mut other = m.clone();
        other.lists[1].xxh3 = 3;
        let d = first_difference(&m, &other).unwrap();
        assert!(d.starts_with("list 1 "), "{d}");
        other.lists[0].xxh3 = 3;
        assert!(first_difference(&m, &other).unwrap().starts_with("list 0 "));
        other.header_xxh3 = 8;
        assert!(first_difference(&m, &other).unwrap().contains("header"));
        other.lists.pop();
        other.header_xxh3 = 7;
        assert!(first_difference(&m, &other)
            .unwrap()
            .contains("2 lists, the index has 1"));
        other.file_len = 99;
        assert!(first_difference(&m, &other).unwrap().contains("99 bytes"));
    }
}
