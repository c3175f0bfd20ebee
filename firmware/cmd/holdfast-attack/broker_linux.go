package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// brokerEnv names the descriptor of the attack broker: a socket to a test
// image's PID 1 (firmware/appliance, attack_suite_linux.go), which starts
// this program as another uid on request. The names and JSON fields match
// appliance.AttackBrokerEnv, BrokerRequest and BrokerReply.
const brokerEnv = "HOLDFAST_ATTACK_BROKER_FD"

type brokerRequest struct {
	Uid, Gid  int
	Groups    []int
	Args      []string
	TimeoutMS int64
}

type brokerReply struct {
	Stdout []byte
	Stderr string
	Err    string
}

// broker is the client side; nil when this program was not given one.
type broker struct {
	f   *os.File
	enc *json.Encoder
	dec *json.Decoder
}

// openBroker takes the broker descriptor named in the environment, if
// any, out of reach of the children this program starts (close-on-exec,
// and the variable removed).
func openBroker() *broker {
	v := os.Getenv(brokerEnv)
	if v == "" {
		return nil
	}
	_ = os.Unsetenv(brokerEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil
	}
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "attack-broker")
	return &broker{f: f, enc: json.NewEncoder(f), dec: json.NewDecoder(f)}
}

// run asks PID 1 to run this program with args as uid:gid and groups.
func (b *broker) run(uid, gid int, groups []int, timeout time.Duration, args []string) (brokerReply, error) {
	req := brokerRequest{Uid: uid, Gid: gid, Groups: groups, Args: args, TimeoutMS: timeout.Milliseconds()}
	if err := b.enc.Encode(req); err != nil {
		return brokerReply{}, fmt.Errorf("attack broker: send: %w", err)
	}
	var rep brokerReply
	if err := b.dec.Decode(&rep); err != nil {
		return brokerReply{}, fmt.Errorf("attack broker: reply: %w", err)
	}
	return rep, nil
}
