//! A file uploaded part by part while it is written (a multipart upload), hashed as it goes:
//! a large file never has to be in memory whole. Until [`Upload::finish`] the object does not
//! exist (S3 keeps the parts of an unfinished upload out of listings; a local store keeps them
//! in a staging file), so a crash midway leaves nothing a reader can see.

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, WriteMultipart};

/// Part size by default (S3 wants at least 5 MiB for all but the last part).
pub const PART_BYTES: usize = 16 * 1024 * 1024;

/// An object being uploaded.
pub struct Upload {
    path: Path,
    parts: WriteMultipart,
    hash: xxhash_rust::xxh3::Xxh3,
    bytes: u64,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("path", &self.path)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

/// A finished upload: what its commit record says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub path: Path,
    pub bytes: u64,
    /// xxh3-64 of the bytes (hex).
    pub checksum: String,
}

impl Upload {
    /// Starts uploading `path` in parts of `part_bytes`.
    pub async fn start(
        store: &dyn ObjectStore,
        path: Path,
        part_bytes: usize,
    ) -> Result<Upload, object_store::Error> {
        let upload = store.put_multipart(&path).await?;
        Ok(Upload {
            path,
            parts: WriteMultipart::new_with_chunk_size(upload, part_bytes),
            hash: xxhash_rust::xxh3::Xxh3::new(),
            bytes: 0,
        })
    }

    /// Appends bytes; waits while two parts are already being sent (bounded memory).
    pub async fn put(&mut self, chunk: Vec<u8>) -> Result<(), object_store::Error> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.hash.update(&chunk);
        self.bytes += chunk.len() as u64;
        self.parts.put(Bytes::from(chunk));
        self.parts.wait_for_capacity(2).await
    }

    /// Completes the upload: the object exists from now on.
    pub async fn finish(self) -> Result<Uploaded, object_store::Error> {
        let checksum = format!("{:016x}", self.hash.digest());
        self.parts.finish().await?;
        Ok(Uploaded {
            path: self.path,
            bytes: self.bytes,
            checksum,
        })
    }

    /// Gives the upload up (best effort: the store drops the parts sent).
    pub async fn abort(self) {
        let _ = self.parts.abort().await;
    }
}
