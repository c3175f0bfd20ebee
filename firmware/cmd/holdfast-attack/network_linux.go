package main

import (
	"bufio"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// localAddrs are 127.0.0.1 and every address of the box's interfaces.
func localAddrs() []string {
	seen := map[string]bool{"127.0.0.1": true}
	out := []string{"127.0.0.1"}
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.IsUnspecified() {
				continue
			}
			s := ipn.IP.String()
			if ipn.IP.IsLinkLocalUnicast() && ipn.IP.To4() == nil {
				s += "%" + ifc.Name
			}
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return out
}

// portScanResult connects to every TCP port of every local address.
func portScanResult() result {
	addrs := localAddrs()
	type job struct {
		addr string
		port int
	}
	jobs := make(chan job, 1024)
	var mu sync.Mutex
	var open []string
	var wg sync.WaitGroup
	d := net.Dialer{Timeout: 300 * time.Millisecond}
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				c, err := d.Dial("tcp", net.JoinHostPort(j.addr, strconv.Itoa(j.port)))
				if err == nil {
					c.Close()
					mu.Lock()
					open = append(open, net.JoinHostPort(j.addr, strconv.Itoa(j.port)))
					mu.Unlock()
				}
			}
		}()
	}
	for _, a := range addrs {
		for p := 1; p <= 65535; p++ {
			jobs <- job{a, p}
		}
	}
	close(jobs)
	wg.Wait()
	if len(open) > 0 {
		sort.Strings(open)
		shown := open
		if len(shown) > 8 {
			shown = shown[:8]
		}
		return succeededf("%d open TCP ports: %s", len(open), strings.Join(shown, " "))
	}
	return refusedf("no open TCP port among 1-65535 on %s", strings.Join(addrs, " "))
}

// httpPutResult tries to push an object where an S3 export would listen.
func httpPutResult() result {
	var rs []result
	for _, addr := range []string{"127.0.0.1:9000", "127.0.0.1:443"} {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			rs = append(rs, refusedf("PUT to %s: %v", addr, err))
			continue
		}
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		fmt.Fprintf(c, "PUT /holdfast/hf-attack HTTP/1.1\r\nHost: %s\r\nContent-Length: 15\r\nConnection: close\r\n\r\nholdfast-attack", addr)
		line, rerr := bufio.NewReader(c).ReadString('\n')
		c.Close()
		rs = append(rs, succeededf("connected to %s; response: %s", addr, strings.TrimSpace(line+" "+errOr(rerr, ""))))
	}
	return combine(rs...)
}
