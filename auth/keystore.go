package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrInsecureKeystore is returned (wrapped) when a file holding a secret key
// can be read or written by group or others.
var ErrInsecureKeystore = errors.New("keystore file is accessible by group or others")

// keystoreFile is the on-disk form of a key pair: VOLTTRON's keystore.json
// shape ({"public": ..., "secret": ...}); any key form ParseKey accepts is
// read, Z85 is written.
type keystoreFile struct {
	Public string `json:"public"`
	Secret string `json:"secret"`
}

// LoadKeystore reads a key pair from a keystore file. Like ssh, it refuses a
// file that group or others may access (the error wraps ErrInsecureKeystore
// and names the file and its mode). It checks that the public key matches the
// secret key.
func LoadKeystore(path string) (KeyPair, error) {
	var kp KeyPair
	st, err := os.Stat(path)
	if err != nil {
		return kp, fmt.Errorf("keystore %s: %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return kp, fmt.Errorf("keystore %s: mode %04o: %w; run: chmod 600 %s", path, st.Mode().Perm(), ErrInsecureKeystore, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return kp, fmt.Errorf("keystore %s: %w", path, err)
	}
	var f keystoreFile
	if err := json.Unmarshal(data, &f); err != nil {
		return kp, fmt.Errorf("keystore %s: not a JSON object with \"public\" and \"secret\": %v", path, err)
	}
	if kp.Secret, err = ParseSecretKey(f.Secret); err != nil {
		return kp, fmt.Errorf("keystore %s: field \"secret\": %w", path, err)
	}
	derived := kp.Secret.Public()
	if f.Public == "" {
		kp.Public = derived
		return kp, nil
	}
	if kp.Public, err = ParseKey(f.Public); err != nil {
		return kp, fmt.Errorf("keystore %s: field \"public\": %w", path, err)
	}
	if kp.Public != derived {
		return kp, fmt.Errorf("keystore %s: %w: \"public\" does not belong to \"secret\"", path, ErrInvalidKey)
	}
	return kp, nil
}

// SaveKeystore writes kp to path with mode 0600, atomically (a temporary file
// in the same directory renamed over path). Parent directories are created
// with mode 0700.
func SaveKeystore(path string, kp KeyPair) error {
	data, err := json.MarshalIndent(keystoreFile{Public: kp.Public.Z85(), Secret: kp.Secret.Z85()}, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	return WriteFileAtomic(path, data, 0o600)
}

// LoadOrCreateKeystore loads the key pair at path, creating a new one (mode
// 0600) if the file does not exist.
func LoadOrCreateKeystore(path string) (kp KeyPair, created bool, err error) {
	kp, err = LoadKeystore(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return kp, false, err
	}
	if kp, err = GenerateKeyPair(); err != nil {
		return kp, false, err
	}
	if err = SaveKeystore(path, kp); err != nil {
		return kp, false, err
	}
	return kp, true, nil
}

// WriteFileAtomic writes data to a temporary file beside path with the given
// mode, syncs it and renames it over path, so readers see the old or the new
// content, never a mix.
func WriteFileAtomic(path string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name) // no-op after a successful rename
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(name, path)
}
