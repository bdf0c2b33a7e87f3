package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"sync"
)

// caSignatures remembers which CA certificate signed which. Every
// certificate Vault issues comes with the same intermediate and root, and
// NewBundle checked the root's self-signature twice and the intermediate's
// signature once more for each: 3 of its 4 ECDSA verifications, 8% of the
// agent's CPU in the N=10,000 initial pass (profile). The answer depends
// only on the two certificates' bytes, so it is kept, keyed by their
// hashes. Leaves are new every time and are always checked.
var caSignatures = struct {
	sync.Mutex
	ok map[[2][sha256.Size]byte]bool
}{}

// caSignaturesMax bounds the memo; past it, CAs are being rotated and
// starting over is right.
const caSignaturesMax = 64

// signedBy reports whether parent's key signed child (CheckSignatureFrom).
func signedBy(child, parent *x509.Certificate) bool {
	if !child.IsCA {
		return child.CheckSignatureFrom(parent) == nil
	}
	key := [2][sha256.Size]byte{sha256.Sum256(child.Raw), sha256.Sum256(parent.Raw)}
	caSignatures.Lock()
	ok, known := caSignatures.ok[key]
	caSignatures.Unlock()
	if known {
		return ok
	}
	ok = child.CheckSignatureFrom(parent) == nil
	caSignatures.Lock()
	if caSignatures.ok == nil || len(caSignatures.ok) >= caSignaturesMax {
		caSignatures.ok = map[[2][sha256.Size]byte]bool{}
	}
	caSignatures.ok[key] = ok
	caSignatures.Unlock()
	return ok
}
