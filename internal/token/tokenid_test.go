package token

import (
	"regexp"
	"slices"
	"testing"
	"time"
)

func TestEncodeULID(t *testing.T) {
	var zero, max [16]byte
	for i := range max {
		max[i] = 0xff
	}
	if got := encodeULID(zero); got != "00000000000000000000000000" {
		t.Errorf("zero = %s", got)
	}
	if got := encodeULID(max); got != "7ZZZZZZZZZZZZZZZZZZZZZZZZZ" {
		t.Errorf("max = %s", got)
	}
	// The timestamp of the ULID spec's example 01ARYZ6S41TSV4RRFFQ69G5FAV.
	id := newTokenID(time.UnixMilli(1469918176385))
	if id[:10] != "01ARYZ6S41" {
		t.Errorf("timestamp part %s, want 01ARYZ6S41", id[:10])
	}
}

func TestNewTokenID(t *testing.T) {
	shape := regexp.MustCompile(`^[0-7][0-9A-HJKMNP-TV-Z]{25}$`)
	var ids []string
	start := time.Now()
	for i := range 100 {
		ids = append(ids, newTokenID(start.Add(time.Duration(i)*time.Millisecond)))
	}
	for _, id := range ids {
		if !shape.MatchString(id) || len(id) != TokenIDLength {
			t.Fatalf("ID %q is not a ULID", id)
		}
	}
	if !slices.IsSorted(ids) {
		t.Error("IDs from later milliseconds do not sort later")
	}
	if a, b := NewTokenID(), NewTokenID(); a == b {
		t.Error("two IDs are equal")
	}
}
