//! The generated protocol types and gRPC stubs of package `hotline.v1`,
//! kept apart from the logic that decides what to do with them.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("hotline.v1");

/// The encoded file descriptor set, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("hotline_descriptor");
