//! CBC encryption with PKCS#7 padding for the three ciphers PKCS#12
//! profiles use. aws-lc-rs offers AES only; the legacy profiles need
//! 3DES and RC2-40, which aws-lc has behind its EVP interface, so this is
//! the one place certwright calls aws-lc's C API directly.

use std::os::raw::c_int;
use std::ptr;

use aws_lc_sys::{
    EVP_CIPHER, EVP_CIPHER_CTX, EVP_CIPHER_CTX_free, EVP_CIPHER_CTX_new, EVP_EncryptFinal_ex,
    EVP_EncryptInit_ex, EVP_EncryptUpdate, EVP_aes_256_cbc, EVP_des_ede3_cbc, EVP_rc2_40_cbc,
};

use super::KeystoreError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cipher {
    /// 3-key triple DES (pbeWithSHAAnd3-KeyTripleDES-CBC).
    TripleDes,
    /// RC2 with a 40-bit key (pbeWithSHAAnd40BitRC2-CBC).
    Rc2_40,
    /// AES-256 (PBES2).
    Aes256,
}

impl Cipher {
    pub fn key_len(self) -> usize {
        match self {
            Self::TripleDes => 24,
            Self::Rc2_40 => 5,
            Self::Aes256 => 32,
        }
    }

    pub fn iv_len(self) -> usize {
        match self {
            Self::TripleDes | Self::Rc2_40 => 8,
            Self::Aes256 => 16,
        }
    }

    fn evp(self) -> *const EVP_CIPHER {
        // SAFETY: these return pointers to static cipher tables.
        unsafe {
            match self {
                Self::TripleDes => EVP_des_ede3_cbc(),
                Self::Rc2_40 => EVP_rc2_40_cbc(),
                Self::Aes256 => EVP_aes_256_cbc(),
            }
        }
    }
}

/// Frees the context however `encrypt` returns.
struct Context(*mut EVP_CIPHER_CTX);

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: the pointer came from EVP_CIPHER_CTX_new and is freed once.
        unsafe { EVP_CIPHER_CTX_free(self.0) }
    }
}

/// `plaintext` encrypted with `key` and `iv`, padded to whole blocks.
pub fn encrypt(
    cipher: Cipher,
    key: &[u8],
    iv: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, KeystoreError> {
    if key.len() != cipher.key_len() || iv.len() != cipher.iv_len() {
        return Err(KeystoreError::Crypto("wrong key or IV length"));
    }
    let len = c_int::try_from(plaintext.len()).map_err(|_| KeystoreError::Crypto("too long"))?;
    // A whole block of padding at most.
    let mut out = vec![0u8; plaintext.len() + 16];
    // SAFETY: the context is checked for null and freed by its guard; the
    // key and IV have the lengths the cipher reads (checked above); `out`
    // has room for the input and one block of padding, and the lengths
    // aws-lc writes back are used to cut it.
    unsafe {
        let ctx = Context(EVP_CIPHER_CTX_new());
        if ctx.0.is_null() {
            return Err(KeystoreError::Crypto("no cipher context"));
        }
        if EVP_EncryptInit_ex(
            ctx.0,
            cipher.evp(),
            ptr::null_mut(),
            key.as_ptr(),
            iv.as_ptr(),
        ) != 1
        {
            return Err(KeystoreError::Crypto("cipher init"));
        }
        let mut written: c_int = 0;
        if EVP_EncryptUpdate(
            ctx.0,
            out.as_mut_ptr(),
            &mut written,
            plaintext.as_ptr(),
            len,
        ) != 1
        {
            return Err(KeystoreError::Crypto("cipher update"));
        }
        let mut last: c_int = 0;
        let done = usize::try_from(written).map_err(|_| KeystoreError::Crypto("length"))?;
        if EVP_EncryptFinal_ex(ctx.0, out.as_mut_ptr().add(done), &mut last) != 1 {
            return Err(KeystoreError::Crypto("cipher final"));
        }
        out.truncate(done + usize::try_from(last).map_err(|_| KeystoreError::Crypto("length"))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cipher_pads_to_whole_blocks() {
        for cipher in [Cipher::TripleDes, Cipher::Rc2_40, Cipher::Aes256] {
            let key = vec![7u8; cipher.key_len()];
            let iv = vec![1u8; cipher.iv_len()];
            let block = cipher.iv_len();
            for n in [0, 1, block, 3 * block + 1] {
                let out = encrypt(cipher, &key, &iv, &vec![0u8; n]).expect("encrypts");
                assert_eq!(out.len(), (n / block + 1) * block, "{cipher:?} {n}");
            }
        }
        assert!(encrypt(Cipher::Aes256, &[0; 16], &[0; 16], b"x").is_err());
    }

    #[test]
    fn aes_matches_aws_lc_rs() {
        use aws_lc_rs::cipher::{
            AES_256, EncryptionContext, PaddedBlockEncryptingKey, UnboundCipherKey,
        };
        let (key, iv) = ([3u8; 32], [9u8; 16]);
        let plain = b"certwright keystores".to_vec();
        let mut theirs = plain.clone();
        PaddedBlockEncryptingKey::cbc_pkcs7(UnboundCipherKey::new(&AES_256, &key).unwrap())
            .unwrap()
            .less_safe_encrypt(&mut theirs, EncryptionContext::Iv128(iv.into()))
            .unwrap();
        assert_eq!(encrypt(Cipher::Aes256, &key, &iv, &plain).unwrap(), theirs);
    }
}
