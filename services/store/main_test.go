package store

import (
	"os"
	"strings"
	"testing"
)

// The test binary doubles as the child processes some tests need: an
// attacker without CAP_LINUX_IMMUTABLE and a writer that is killed mid-put.
// childEnv selects the role.
const childEnv = "HOLDFAST_STORE_TEST_CHILD"

func TestMain(m *testing.M) {
	switch role := os.Getenv(childEnv); role {
	case "":
		os.Exit(m.Run())
	case "attack-drop":
		attackDropChild()
	case "attack":
		attackChild()
	case "writer":
		writerChild()
	default:
		os.Stderr.WriteString("unknown child role " + role + "\n")
		os.Exit(2)
	}
}

// childEnviron returns the environment with childEnv set to role.
func childEnviron(role string, extra ...string) []string {
	env := []string{childEnv + "=" + role}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, childEnv+"=") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}
