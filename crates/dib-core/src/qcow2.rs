//! Streaming raw-to-qcow2 writer with optional deflate-compressed clusters.
