package appliance

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/firmware/configpart"
	"github.com/holdfast-appliance/holdfast/firmware/tpm"
	"github.com/holdfast-appliance/holdfast/firmware/trustedtime"
	"github.com/holdfast-appliance/holdfast/services/store"
)

var testMaster = bytes.Repeat([]byte{0x42}, store.MasterKeySize)

// TestRoleInitsHoldNoPID1Key: what PID 1 sends the worker and the export
// carries neither the master key nor any key PID 1 derives for its own
// records, and no key either gets opens or forges the config partition's
// config.sealed, T's records or the TPM owner auth.
func TestRoleInitsHoldNoPID1Key(t *testing.T) {
	master := bytes.Repeat([]byte{0x5a}, store.MasterKeySize)
	id := [16]byte{0xab, 0xcd}
	cfgRaw := []byte("source \"s\" {}\n")
	pid1 := map[string][]byte{"master": master}
	var err error
	if pid1["trusted time"], err = trustedtime.Key(master); err != nil {
		t.Fatal(err)
	}
	if pid1["owner auth"], err = tpm.OwnerAuth(master); err != nil {
		t.Fatal(err)
	}
	sealedCfg, err := configpart.SealConfig(master, cfgRaw)
	if err != nil {
		t.Fatal(err)
	}
	state := trustedtime.State{T: time.Unix(1_800_000_000, 0), Wall: time.Unix(1_800_000_000, 0)}
	record := trustedtime.Encode(pid1["trusted time"], 7, state)

	for _, tc := range []struct {
		name    string
		isNew   bool
		storeID string
	}{
		{"existing store", false, hex.EncodeToString(id[:])},
		{"new store", true, "(new)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &appliance{master: master, storeID: tc.storeID, newStore: tc.isNew, cfgRaw: cfgRaw, storeDir: "/data/store"}
			wi, err := a.workerInit(nil, time.Time{}, []byte("wrapped"))
			if err != nil {
				t.Fatal(err)
			}
			if len(wi.Keys.Clock) != 32 {
				t.Fatalf("worker init has no full store keys: %+v", wi.Keys)
			}
			if !tc.isNew && wi.Keys.ID != id {
				t.Fatalf("worker keys for store %x, the disks hold %x", wi.Keys.ID, id)
			}
			handed := [][]byte{wi.Keys.ChunkID, wi.Keys.Data, wi.Keys.Meta, wi.Keys.Clock}
			wire, err := json.Marshal(wi)
			if err != nil {
				t.Fatal(err)
			}
			msgs := [][]byte{wire}
			if !tc.isNew {
				a.storeID = tc.storeID
				ei, err := a.exportInit()
				if err != nil {
					t.Fatal(err)
				}
				if ei.Keys.Clock != nil || ei.Keys.ID != id {
					t.Fatalf("export keys: clock %x, id %x: want no clock key, id %x", ei.Keys.Clock, ei.Keys.ID, id)
				}
				ew, err := json.Marshal(ei)
				if err != nil {
					t.Fatal(err)
				}
				msgs = append(msgs, ew)
				handed = append(handed, ei.Keys.ChunkID, ei.Keys.Data, ei.Keys.Meta)
			}
			for _, m := range msgs {
				for name, k := range pid1 {
					for _, enc := range []string{base64.StdEncoding.EncodeToString(k), hex.EncodeToString(k)} {
						if bytes.Contains(m, []byte(enc)) {
							t.Fatalf("a role's init carries PID 1's %s key: %s", name, m)
						}
					}
				}
			}
			for i, k := range handed {
				for name, p := range pid1 {
					if bytes.Equal(k, p) {
						t.Fatalf("handed key %d equals PID 1's %s key", i, name)
					}
				}
				// Used as if it were the master key, it opens nothing of PID 1's ...
				if _, err := configpart.OpenConfig(k, sealedCfg); err == nil {
					t.Fatalf("handed key %d opens config.sealed", i)
				}
				if _, _, err := trustedtime.Decode(k, record); err == nil {
					t.Fatalf("handed key %d authenticates T's record", i)
				}
				tk, err := trustedtime.Key(k)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := trustedtime.Decode(tk, record); err == nil {
					t.Fatalf("the time key derived from handed key %d authenticates T's record", i)
				}
				// ... and forges nothing PID 1 accepts.
				forged, err := configpart.SealConfig(k, []byte("forged"))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := configpart.OpenConfig(master, forged); err == nil {
					t.Fatalf("a config sealed with handed key %d passes PID 1's check", i)
				}
				for _, fk := range [][]byte{k, tk} {
					if _, _, err := trustedtime.Decode(pid1["trusted time"], trustedtime.Encode(fk, 8, state)); err == nil {
						t.Fatalf("a T record MACed with a key from handed key %d passes PID 1's check", i)
					}
				}
				if auth, _ := tpm.OwnerAuth(k); bytes.Equal(auth, pid1["owner auth"]) {
					t.Fatalf("handed key %d gives the TPM owner auth", i)
				}
			}
		})
	}
}
