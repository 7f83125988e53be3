package audit

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// CheckpointMessage is what a checkpoint's signature covers: a fixed
// context string, the sequence number and the hash of the line it vouches
// for, one per line.
func CheckpointMessage(seq uint64, hash string) []byte {
	return []byte("tollgate-audit-checkpoint/v1\n" + strconv.FormatUint(seq, 10) + "\n" + hash + "\n")
}

// Signer signs checkpoints with an Ed25519 key.
type Signer struct {
	key   ed25519.PrivateKey
	keyID string
}

// KeyID names a public key: the first 16 hex digits of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:8])
}

// LoadSigner reads an Ed25519 private key from a PEM file (PKCS #8, as
// `openssl genpkey -algorithm ed25519` writes it).
func LoadSigner(path string) (*Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: signing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("audit: signing key %s: no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("audit: signing key %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("audit: signing key %s: a %T, want Ed25519", path, k)
	}
	return NewSigner(key), nil
}

// NewSigner returns a signer for key.
func NewSigner(key ed25519.PrivateKey) *Signer {
	return &Signer{key: key, keyID: KeyID(key.Public().(ed25519.PublicKey))}
}

// checkpoint signs the line with sequence number seq and hash.
func (s *Signer) checkpoint(seq uint64, hash [32]byte) *Checkpoint {
	h := hex.EncodeToString(hash[:])
	sig, _ := s.key.Sign(nil, CheckpointMessage(seq, h), crypto.Hash(0)) // Ed25519 can't fail
	return &Checkpoint{Seq: seq, Hash: h, KeyID: s.keyID, Sig: base64.StdEncoding.EncodeToString(sig)}
}

// LoadVerifyKey reads the key that checks checkpoints: an Ed25519 public key
// (PKIX PEM, `openssl pkey -pubout`) or the private key itself.
func LoadVerifyKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: verify key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("audit: verify key %s: no PEM block", path)
	}
	var k any
	switch blk.Type {
	case "PUBLIC KEY":
		k, err = x509.ParsePKIXPublicKey(blk.Bytes)
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("audit: verify key %s: PEM block %q, want PUBLIC KEY or PRIVATE KEY", path, blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: verify key %s: %w", path, err)
	}
	switch k := k.(type) {
	case ed25519.PublicKey:
		return k, nil
	case ed25519.PrivateKey:
		return k.Public().(ed25519.PublicKey), nil
	}
	return nil, fmt.Errorf("audit: verify key %s: a %T, want Ed25519", path, k)
}

// verifyCheckpoint checks c against the line before it and the key.
func verifyCheckpoint(c *Checkpoint, prevSeq uint64, prevHash [32]byte, key ed25519.PublicKey) error {
	if c.Seq != prevSeq || c.Hash != hex.EncodeToString(prevHash[:]) {
		return fmt.Errorf("signs seq %d, but the line before it is seq %d or its hash differs", c.Seq, prevSeq)
	}
	if key == nil {
		return nil
	}
	if c.KeyID != KeyID(key) {
		return fmt.Errorf("signed by key %s, not the given key %s", c.KeyID, KeyID(key))
	}
	sig, err := base64.StdEncoding.DecodeString(c.Sig)
	if err != nil || !ed25519.Verify(key, CheckpointMessage(c.Seq, c.Hash), sig) {
		return errors.New("bad signature: the lines it covers, or the checkpoint, were changed")
	}
	return nil
}
