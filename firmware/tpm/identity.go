package tpm

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Identity names this TPM as its owner hierarchy is now: SHA-256 of the
// SRK's Name. Another TPM, or this one after TPM2_Clear (new owner seed),
// gives another identity; the trusted time (firmware/trustedtime) credits
// nothing across a change.
func (t *TPM) Identity(ctx context.Context) ([32]byte, error) {
	var id [32]byte
	err := t.do(ctx, func(tr transport.TPM) error {
		srk, flush, err := createSRK(tr)
		if err != nil {
			return err
		}
		defer flush()
		id = sha256.Sum256(srk.name.Buffer)
		return nil
	})
	if err != nil {
		return id, fmt.Errorf("tpm identity: %w", err)
	}
	return id, nil
}

// ClockSet runs TPM2_ClockSet with the owner authorization ownerAuth
// (empty on a TPM whose owner auth was never set). The TPM only moves its
// Clock forward. Holdfast never calls it in the field; tests use it to let
// time pass on swtpm, and to show that it needs the owner auth. go-tpm has
// no ClockSet command, so it is marshalled here:
//
//	| size | field                                             |
//	|------|---------------------------------------------------|
//	| 2    | tag TPM_ST_SESSIONS (0x8002)                      |
//	| 4    | commandSize                                       |
//	| 4    | commandCode TPM_CC_ClockSet (0x128)               |
//	| 4    | auth handle TPM_RH_OWNER (0x40000001)             |
//	| 4    | authorizationSize                                 |
//	| 4    | session TPM_RS_PW (0x40000009)                    |
//	| 2    | nonce size (0)                                    |
//	| 1    | session attributes (0)                            |
//	| 2+n  | TPM2B password (ownerAuth)                        |
//	| 8    | newTime, ms                                       |
func (t *TPM) ClockSet(ctx context.Context, newTime uint64, ownerAuth []byte) error {
	if len(ownerAuth) > 64 {
		return fmt.Errorf("tpm2_clockset: owner auth of %d bytes", len(ownerAuth))
	}
	auth := binary.BigEndian.AppendUint32(nil, uint32(tpm2.TPMRSPW))
	auth = append(auth, 0, 0, 0)
	auth = binary.BigEndian.AppendUint16(auth, uint16(len(ownerAuth)))
	auth = append(auth, ownerAuth...)
	body := binary.BigEndian.AppendUint32(nil, uint32(tpm2.TPMCCClockSet))
	body = binary.BigEndian.AppendUint32(body, uint32(tpm2.TPMRHOwner))
	body = binary.BigEndian.AppendUint32(body, uint32(len(auth)))
	body = append(body, auth...)
	body = binary.BigEndian.AppendUint64(body, newTime)
	cmd := binary.BigEndian.AppendUint16(nil, uint16(tpm2.TPMSTSessions))
	cmd = binary.BigEndian.AppendUint32(cmd, uint32(6+len(body)))
	cmd = append(cmd, body...)
	return t.do(ctx, func(tr transport.TPM) error {
		rsp, err := tr.Send(cmd)
		if err != nil {
			return fmt.Errorf("tpm2_clockset: %w", err)
		}
		if len(rsp) < 10 {
			return fmt.Errorf("tpm2_clockset: short response (%d bytes)", len(rsp))
		}
		if rc := tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:])); rc != tpm2.TPMRCSuccess {
			return fmt.Errorf("tpm2_clockset: %w", rc)
		}
		return nil
	})
}
