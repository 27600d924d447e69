//! Size limits every peer enforces before decoding or allocating.

/// Largest WebSocket message either side accepts (also set as the frame size limit).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Largest piece of chunk or blob data in one `ChunkPut` or `ChunkData` message.
pub const MAX_PIECE_BYTES: usize = 512 * 1024;

/// Largest blob (chunk or manifest) assembled from pieces: bounds memory per upload.
pub const MAX_BLOB_BYTES: usize = 64 * 1024 * 1024;

/// Largest total of Automerge change bytes in one `DocChanges` message.
pub const MAX_CHANGES_BYTES: usize = 768 * 1024;

/// Most ids in one `ChunkQuery`, `ChunkMissing` or `ChunkGet`.
pub const MAX_IDS_PER_MESSAGE: usize = 4096;

/// Most heads in one `DocHeads`.
pub const MAX_HEADS: usize = 1024;

/// Longest user or device name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// Most document operations a device puts in one Automerge change. Every change must fit one
/// `DocChanges` message ([`MAX_CHANGES_BYTES`]); a test checks this bound against the largest
/// possible file creations.
pub const MAX_OPS_PER_CHANGE: usize = 1000;
