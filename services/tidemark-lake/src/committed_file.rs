//! Reading a committed file: its bytes, checked against the checksum its commit record holds,
//! so a file changed or damaged after its commit is refused by every reader alike.

use bytes::Bytes;
use object_store::ObjectStore;

use crate::{commit_log, layout};

#[derive(Debug, thiserror::Error)]
pub enum CommittedFileError {
    #[error("bronze object store: {0}")]
    Store(#[from] object_store::Error),
    #[error(
        "bronze file {path}: its bytes hash to {actual}, but its commit record says {expected} \
         (the file was changed or damaged after it was committed)"
    )]
    Checksum {
        path: String,
        expected: String,
        actual: String,
    },
}

/// The bytes of the committed file at `path` (as a commit record names it), checked against
/// `checksum` when the record has one.
pub async fn read(
    store: &dyn ObjectStore,
    path: &str,
    checksum: Option<&str>,
) -> Result<Bytes, CommittedFileError> {
    let bytes = store.get(&layout::stored_path(path)).await?.bytes().await?;
    if let Some(expected) = checksum {
        let actual = commit_log::checksum(&bytes);
        if actual != expected {
            return Err(CommittedFileError::Checksum {
                path: path.to_owned(),
                expected: expected.to_owned(),
                actual,
            });
        }
    }
    Ok(bytes)
}
