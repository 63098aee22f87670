package main

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
)

// A sample keeps what the reports need, and no pointer for the collector to scan.
func TestSampleHoldsNoPointer(t *testing.T) {
	for i := range reflect.TypeFor[sample]().NumField() {
		f := reflect.TypeFor[sample]().Field(i)
		switch f.Type.Kind() {
		case reflect.Pointer, reflect.String, reflect.Slice, reflect.Map, reflect.Interface, reflect.Chan, reflect.Func:
			t.Errorf("sample.%s is a %s: the collector would scan every sample of a soak", f.Name, f.Type.Kind())
		}
	}
	s := newSample("void", "00", "000000123456")
	assert.Equal(t, "void", s.kind())
	assert.Equal(t, "00", s.codeOf())
	assert.Equal(t, "000000123456", s.rrnOf())
	s = newSample("status", "25", "")
	assert.Equal(t, "status", s.kind())
	assert.Equal(t, "25", s.codeOf())
	assert.Empty(t, s.rrnOf(), "no RRN")
	for _, k := range []string{"purchase", "qps", "void", "reversal", "status"} { // the mix's kinds
		assert.Equal(t, k, newSample(k, "00", "").kind())
	}
}
