package keys

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/capbus/capbus/internal/atomicfile"
)

// ErrInsecureFile is returned (wrapped) when a file holding a secret key
// can be read or written by group or others.
var ErrInsecureFile = errors.New("keystore file is accessible by group or others")

// keystoreFile is the on-disk form of a key pair: VOLTTRON's keystore.json
// shape ({"public": ..., "secret": ...}); any key form Parse accepts is
// read, Z85 is written.
type keystoreFile struct {
	Public string `json:"public"`
	Secret string `json:"secret"`
}

// Load reads a key pair from a keystore file. Like ssh, it refuses a
// file that group or others may access (the error wraps ErrInsecureFile
// and names the file and its mode). It checks that the public key matches the
// secret key.
func Load(path string) (Pair, error) {
	var kp Pair
	st, err := os.Stat(path)
	if err != nil {
		return kp, fmt.Errorf("keystore %s: %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return kp, fmt.Errorf("keystore %s: mode %04o: %w; run: chmod 600 %s", path, st.Mode().Perm(), ErrInsecureFile, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return kp, fmt.Errorf("keystore %s: %w", path, err)
	}
	var f keystoreFile
	if err := json.Unmarshal(data, &f); err != nil {
		return kp, fmt.Errorf("keystore %s: not a JSON object with \"public\" and \"secret\": %v", path, err)
	}
	if kp.Secret, err = ParseSecret(f.Secret); err != nil {
		return kp, fmt.Errorf("keystore %s: field \"secret\": %w", path, err)
	}
	derived := kp.Secret.Public()
	if f.Public == "" {
		kp.Public = derived
		return kp, nil
	}
	if kp.Public, err = Parse(f.Public); err != nil {
		return kp, fmt.Errorf("keystore %s: field \"public\": %w", path, err)
	}
	if kp.Public != derived {
		return kp, fmt.Errorf("keystore %s: %w: \"public\" does not belong to \"secret\"", path, ErrInvalid)
	}
	return kp, nil
}

// Save writes kp to path with mode 0600, atomically (a temporary file
// in the same directory renamed over path). Parent directories are created
// with mode 0700.
func Save(path string, kp Pair) error {
	data, err := json.MarshalIndent(keystoreFile{Public: kp.Public.Z85(), Secret: kp.Secret.Z85()}, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	return atomicfile.Write(path, data, 0o600)
}

// LoadOrCreate loads the key pair at path, creating a new one (mode
// 0600) if the file does not exist.
func LoadOrCreate(path string) (kp Pair, created bool, err error) {
	kp, err = Load(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return kp, false, err
	}
	if kp, err = Generate(); err != nil {
		return kp, false, err
	}
	if err = Save(path, kp); err != nil {
		return kp, false, err
	}
	return kp, true, nil
}
