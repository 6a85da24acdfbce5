package authz

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/internal/registry"
)

// Dir is the appointments directory's name inside the protocols directory.
const Dir = "appointments"

// LoadDir evaluates every *.yaml and *.yml file directly in dir (each with
// FILE.jws and FILE.withdrawals.json beside it) as of now, sorted by file.
// A missing dir is no appointments. Only I/O failures are errors. Two
// files with the same appointment id are both invalid.
func LoadDir(dir string, reg *registry.Registry, now time.Time) ([]Status, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return []Status{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("appointments: %w", err)
	}
	out := []Status{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		st, err := EvaluateFile(filepath.Join(dir, name), reg, now)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	sortStatuses(out)
	seen := map[string]int{}
	for i, st := range out {
		if st.Appointment == nil {
			continue
		}
		if j, dup := seen[st.Appointment.ID]; dup {
			for _, k := range []int{i, j} {
				out[k].Valid, out[k].InForce = false, false
				msg := "appointment id " + st.Appointment.ID + " is used by two files"
				out[k].Reasons = append(out[k].Reasons, msg)
				out[k].Faults = append(out[k].Faults, msg)
			}
			continue
		}
		seen[st.Appointment.ID] = i
	}
	return out, nil
}

// EvaluateFile reads path, path+".jws" and path+".withdrawals.json" (both
// optional) and evaluates them.
func EvaluateFile(path string, reg *registry.Registry, now time.Time) (Status, error) {
	doc, err := os.ReadFile(path)
	if err != nil {
		return Status{}, fmt.Errorf("appointment: %w", err)
	}
	sigs, err := readOptional(path + protocol.SignatureSuffix)
	if err != nil {
		return Status{}, err
	}
	wds, err := readOptional(path + protocol.WithdrawalSuffix)
	if err != nil {
		return Status{}, err
	}
	return Evaluate(path, doc, sigs, wds, reg, now), nil
}

func readOptional(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("appointment: %w", err)
	}
	return b, nil
}

// SignFile signs the appointment file at path as signer (a partner, or
// the Trust) and writes path+".jws", keeping the other signature.
func SignFile(path string, key jwk.Key, signer string) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	existing, err := readOptional(path + protocol.SignatureSuffix)
	if err != nil {
		return err
	}
	out, err := Sign(doc, existing, key, signer)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return protocol.WriteAtomic(path+protocol.SignatureSuffix, out, 0o644)
}

// WithdrawFile signs signer's withdrawal of the appointment at path from
// effective and writes path+".withdrawals.json".
func WithdrawFile(path string, key jwk.Key, signer string, effective, signedAt time.Time) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("withdraw: %w", err)
	}
	existing, err := readOptional(path + protocol.WithdrawalSuffix)
	if err != nil {
		return err
	}
	out, err := Withdraw(doc, existing, key, signer, effective, signedAt)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return protocol.WriteAtomic(path+protocol.WithdrawalSuffix, out, 0o644)
}
