package appliance

import (
	"encoding/hex"
	"fmt"
	"time"

	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/firmware/roles"
	"github.com/holdfast-appliance/holdfast/services/store"
)

// Which process holds which key (docs/keys.md has the whole table): the
// master key, and every key PID 1 derives for its own records (config
// partition, trusted time, TPM owner auth and clock anchor), never leave
// PID 1. The worker gets the store's subkeys (store.StoreKeys: chunk-id,
// data, meta, clock), the export their read-only part (no clock key); the
// sealer and the DHCP client get no key.

// roleKeys derives the subkeys PID 1 hands to the worker: those of the
// store the data disks hold (storeID, hex, as PID 1 read it with the
// master key in phase 5; every data disk of the box holds the same store
// ID), or, for a store the worker is about to create, of a new random ID
// PID 1 picks here.
func roleKeys(master []byte, storeID string, isNew bool) (store.StoreKeys, error) {
	var id [16]byte
	if isNew {
		var err error
		if id, err = store.NewID(); err != nil {
			return store.StoreKeys{}, err
		}
	} else {
		b, err := hex.DecodeString(storeID)
		if err != nil || len(b) != len(id) {
			return store.StoreKeys{}, fmt.Errorf("store ID %q: not %d hex bytes", storeID, len(id))
		}
		copy(id[:], b)
	}
	return store.DeriveKeys(master, id)
}

// workerInit is the worker's init request: the store's subkeys, never the
// master key.
func (a *appliance) workerInit(refs []diskRef, floor time.Time, wrapped []byte) (*control.InitRequest, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	keys, err := roleKeys(a.master, a.storeID, a.newStore)
	if err != nil {
		return nil, err
	}
	return &control.InitRequest{Keys: controlKeys(keys), Config: a.cfgRaw, StoreDir: a.storeDir, Disks: refs,
		TrustedTime: floor, Create: a.newStore, Recovery: wrapped}, nil
}

// controlKeys carries store.StoreKeys over the control protocol, which
// imports nothing of the store (the worker turns them back: storeKeys in
// firmware/worker).
func controlKeys(k store.StoreKeys) control.StoreKeys {
	return control.StoreKeys{ID: k.ID, ChunkID: k.ChunkID, Data: k.Data, Meta: k.Meta, Clock: k.Clock}
}

// exportInit is the export's init: the store's read-only subkeys.
func (a *appliance) exportInit() (roles.ExportInit, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	keys, err := roleKeys(a.master, a.storeID, false)
	if err != nil {
		return roles.ExportInit{}, err
	}
	return roles.ExportInit{Keys: keys.ReadOnly(), Config: a.cfgRaw, StoreDir: a.storeDir}, nil
}
