//! Identifiers derived from `SOURCE_DATE_EPOCH` so that equal inputs give bit-identical
//! images: `seed(purpose, node) = SHA-256("dib-core\0" ‖ image name ‖ "\0" ‖ epoch ‖ "\0" ‖
//! purpose ‖ "\0" ‖ node)`; UUIDs are its first 16 bytes with RFC 9562 version 8 and variant
//! bits, 32-bit ids its first 4 bytes little-endian (0 becomes 1).

use sha2::{Digest, Sha256};

/// What an identifier is for (one seed space each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    MbrDiskId,
    GptDiskGuid,
    GptPartGuid,
    FsUuid,
    Ext4HashSeed,
    VfatVolumeId,
    SwapUuid,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::MbrDiskId => "mbr-disk-id",
            Purpose::GptDiskGuid => "gpt-disk-guid",
            Purpose::GptPartGuid => "gpt-part-guid",
            Purpose::FsUuid => "fs-uuid",
            Purpose::Ext4HashSeed => "ext4-hash-seed",
            Purpose::VfatVolumeId => "vfat-volume-id",
            Purpose::SwapUuid => "swap-uuid",
        }
    }
}

/// The build's identity for derived identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// The image name after suffix stripping.
    pub image_name: String,
    /// `SOURCE_DATE_EPOCH`, as given.
    pub epoch: String,
}

impl Seed {
    fn digest(&self, purpose: Purpose, node: &str) -> [u8; 32] {
        let mut hash = Sha256::new();
        for part in [
            b"dib-core".as_slice(),
            self.image_name.as_bytes(),
            self.epoch.as_bytes(),
            purpose.as_str().as_bytes(),
        ] {
            hash.update(part);
            hash.update([0]);
        }
        hash.update(node.as_bytes());
        hash.finalize().into()
    }

    /// A version-8 UUID (RFC 9562) for `node`, in its 16 bytes as written (big-endian).
    pub fn uuid(&self, purpose: Purpose, node: &str) -> [u8; 16] {
        let digest = self.digest(purpose, node);
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&digest[..16]);
        uuid[6] = (uuid[6] & 0x0F) | 0x80;
        uuid[8] = (uuid[8] & 0x3F) | 0x80;
        uuid
    }

    /// A non-zero 32-bit id for `node`.
    pub fn id32(&self, purpose: Purpose, node: &str) -> u32 {
        let digest = self.digest(purpose, node);
        match u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]) {
            0 => 1,
            id => id,
        }
    }
}

/// A UUID's text form (`8-4-4-4-12`, lowercase).
pub fn uuid_text(uuid: &[u8; 16]) -> String {
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_stable_and_distinct() {
        let seed = Seed {
            image_name: "demo".into(),
            epoch: "1700000000".into(),
        };
        let a = seed.uuid(Purpose::FsUuid, "mkfs_root");
        assert_eq!(a, seed.uuid(Purpose::FsUuid, "mkfs_root"));
        assert_ne!(a, seed.uuid(Purpose::FsUuid, "mkfs_var"));
        assert_ne!(a, seed.uuid(Purpose::SwapUuid, "mkfs_root"));
        let text = uuid_text(&a);
        assert_eq!(&text[14..15], "8", "version 8: {text}");
        assert!("89ab".contains(&text[19..20]), "RFC variant: {text}");
        let other = Seed {
            epoch: "1700000001".into(),
            ..seed.clone()
        };
        assert_ne!(
            seed.id32(Purpose::MbrDiskId, "image0"),
            other.id32(Purpose::MbrDiskId, "image0")
        );
        assert_ne!(seed.id32(Purpose::MbrDiskId, "image0"), 0);
    }
}
