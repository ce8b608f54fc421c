//! The checksum sidecar of a test fixture, written with the library's own
//! manifest API (`IvfIndex::build_manifest`, `Manifest::write`), never by
//! hand, so tests see the bytes `ivflake manifest` writes.

use ivflake::{IndexLocation, IvfIndex, ManifestMode, OpenOptions};

/// Writes the checksum sidecar of the index already stored at `location`
/// beside it: opened without looking for a sidecar, checksummed in one
/// streamed read, the sidecar put next to the object (and, for on-disk
/// lists, the data object's beside that one), as `ivflake manifest` does.
pub async fn write_sidecar(location: IndexLocation) {
    let index = IvfIndex::open_at(
        location,
        OpenOptions {
            manifest: ManifestMode::Ignore,
            ..OpenOptions::default()
        },
    )
    .await
    .expect("open the index to checksum it");
    let manifest = index.build_manifest(|_| {}).await.expect("build the sidecar");
    manifest
        .write(&index.object().location)
        .await
        .expect("write the sidecar");
    if let Some(data) = index.build_data_manifest(|_| {}).await.expect("build the data sidecar") {
        data.write(&index.lists_object().location)
            .await
            .expect("write the data sidecar");
    }
}
