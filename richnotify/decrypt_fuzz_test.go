package richnotify

import (
	"bytes"
	"crypto/aes"
	"testing"
)

// FuzzDecrypt feeds encryptedContent as a forged or damaged notification could carry it, starting from every
// committed vector. Decrypt must never panic, and must accept only content that was signed with a key
// wrapped for the certificate: in practice, a vector's own data and signature, opening to that vector's
// plaintext. Anything else it refuses with a *DecryptError.
func FuzzDecrypt(f *testing.F) {
	d, err := NewDecryptor(mustDecryptor(f, opensslVectors).byID["openssl-cert"], mustDecryptor(f, graphVectors).byID["vector-cert"])
	if err != nil {
		f.Fatal(err)
	}

	type accepted struct{ data, sig, plain []byte }
	var known []accepted
	for _, dir := range []string{"testdata/openssl", "testdata/graph-vectors"} {
		files, _ := globJSON(dir)
		for _, file := range files {
			ec := readVector(f, file).EncryptedContent
			f.Add(ec.Data, ec.DataKey, ec.DataSignature, ec.EncryptionCertificateID, ec.EncryptionCertificateThumbprint)
			if plain, err := d.Decrypt(ec); err == nil {
				data, _ := decodeBase64(ec.Data)
				sig, _ := decodeBase64(ec.DataSignature)
				known = append(known, accepted{data, sig, plain})
			}
		}
	}
	if len(known) < 3 {
		f.Fatalf("only %d vectors decrypt", len(known))
	}
	f.Fuzz(func(t *testing.T, data, dataKey, sig, id, thumb string) {
		ec := EncryptedContent{Data: data, DataKey: dataKey, DataSignature: sig, EncryptionCertificateID: id, EncryptionCertificateThumbprint: thumb}
		plain, err := d.Decrypt(ec)
		if err != nil {
			if _, ok := err.(*DecryptError); !ok {
				t.Fatalf("a failure that is not a *DecryptError: %T %v", err, err)
			}
			if plain != nil {
				t.Fatal("a refusal returned plaintext")
			}
			return
		}
		db, _ := decodeBase64(data)
		sb, _ := decodeBase64(sig)
		for _, k := range known {
			if bytes.Equal(db, k.data) && bytes.Equal(sb, k.sig) {
				if !bytes.Equal(plain, k.plain) {
					t.Fatalf("a vector's ciphertext opened to other plaintext: %q", plain)
				}
				return
			}
		}
		t.Fatalf("accepted content no vector signed: %+v", ec)
	})
}

// FuzzUnpad compares the constant-time PKCS#7 check with the plain reading of the rule.
func FuzzUnpad(f *testing.F) {
	f.Add(bytes.Repeat([]byte{16}, 16))
	f.Add(append(bytes.Repeat([]byte{'x'}, 13), 3, 3, 3))
	f.Add(append(bytes.Repeat([]byte{'x'}, 13), 2, 3, 3))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, ok := unpad(b)
		wn, wok := referenceUnpad(b)
		if ok != wok || n != wn {
			t.Fatalf("unpad(% x) = %d, %v; the rule says %d, %v", b, n, ok, wn, wok)
		}
	})
}

func referenceUnpad(b []byte) (int, bool) {
	if len(b) == 0 || len(b)%aes.BlockSize != 0 {
		return 0, false
	}
	p := int(b[len(b)-1])
	if p < 1 || p > aes.BlockSize {
		return 0, false
	}
	for _, x := range b[len(b)-p:] {
		if int(x) != p {
			return 0, false
		}
	}
	return len(b) - p, true
}
