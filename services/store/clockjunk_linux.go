package store

import (
	"bufio"
	"crypto/hmac"
	"fmt"
	"io"
	"os"
)

// clockJunkRecords is how many records of the clock log's tail may fail
// their tag before CleanForeign reports junk: a power cut leaves at most
// one torn record (padded to the record boundary), and the log is not
// read to decide anything, so a few are no news.
const clockJunkRecords = 2

// reportClockJunk adds the clock log to rep when its last maxClockLogRead
// bytes hold more than clockJunkRecords records that fail their tag: junk
// the worker appended (the log is append-only, so it stays; prune never
// reads it, HighWater reads only that tail).
func (s *Store) reportClockJunk(rep *ForeignReport) {
	f, size, err := openStoreFile(s.clockLogPath(), os.O_RDONLY, -1)
	if err != nil {
		// Missing or foreign: the clean of state/ has dealt with it.
		return
	}
	defer f.Close()
	from := max(0, size-maxClockLogRead)
	from -= from % clockRecLen
	r := bufio.NewReader(io.NewSectionReader(f, from, size-from))
	rec := make([]byte, clockRecLen)
	bad := int64(0)
	for {
		n, err := io.ReadFull(r, rec)
		if err != nil {
			if n > 0 {
				bad++ // a partial record at the end
			}
			break
		}
		if !hmac.Equal(rec[8:], s.clockTag(rec[:8])) {
			bad++
		}
	}
	if bad > clockJunkRecords {
		rep.add(stateDir+"/"+clockLogName, fmt.Sprintf("%d of its last %d bytes are not authentic records (junk appended; the log is append-only, so it stays; prune never reads it)",
			min(bad*clockRecLen, size-from), size-from), false)
	}
}
