package spec

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"

	"github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/field"
)

// Marshal and Unmarshal move values between a typed message struct and a moov-io/iso8583
// message with the library's own rules (`iso8583:"N"` tags, keepzero, anonymous embedded
// structs traversed) and the library's own field types, but read each struct type's tags once.
// The library's Message.Marshal/Unmarshal re-parse every tag on every call: about 7 % of the
// switch's CPU under load (pprof, issue 7), for 8 conversions per purchase.

// structPlan is what the tags of one struct type say.
type structPlan []planEntry

type planEntry struct {
	index    int
	id       int    // message field, or -1 for an embedded struct
	path     string // strconv.Itoa(id)
	keepZero bool
	embedded structPlan
	ptr      bool // embedded through a pointer
}

var plans sync.Map // reflect.Type → structPlan

func planOf(t reflect.Type) structPlan {
	if p, ok := plans.Load(t); ok {
		return p.(structPlan)
	}
	var p structPlan
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := field.NewIndexTag(sf)
		switch {
		case tag.ID >= 0:
			p = append(p, planEntry{index: i, id: tag.ID, path: strconv.Itoa(tag.ID), keepZero: tag.KeepZero})
		case sf.Anonymous:
			et, ptr := sf.Type, false
			if et.Kind() == reflect.Pointer {
				et, ptr = et.Elem(), true
			}
			if et.Kind() == reflect.Struct {
				p = append(p, planEntry{index: i, id: -1, embedded: planOf(et), ptr: ptr})
			}
		}
	}
	plans.Store(t, p)
	return p
}

func structValue(v any) (reflect.Value, error) {
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
		if rv.IsNil() {
			return rv, errors.New("data is a nil pointer")
		}
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return rv, errors.New("data is not a struct")
	}
	return rv, nil
}

// Marshal sets the message fields from the tagged fields of the struct v points to.
func Marshal(m *iso8583.Message, v any) error {
	rv, err := structValue(v)
	if err != nil {
		return err
	}
	return marshalPlan(m, planOf(rv.Type()), rv)
}

// walk calls leaf for every tagged field of rv, through embedded structs. A nil embedded pointer
// is skipped, or allocated when alloc is set (unmarshalling fills it).
func walk(p structPlan, rv reflect.Value, alloc bool, leaf func(e planEntry, fv reflect.Value) error) error {
	for _, e := range p {
		fv := rv.Field(e.index)
		if e.id >= 0 {
			if err := leaf(e, fv); err != nil {
				return err
			}
			continue
		}
		if e.ptr {
			if fv.IsNil() {
				if !alloc {
					continue
				}
				fv.Set(reflect.New(fv.Type().Elem()))
			}
			fv = fv.Elem()
		}
		if err := walk(e.embedded, fv, alloc, leaf); err != nil {
			return err
		}
	}
	return nil
}

func marshalPlan(m *iso8583.Message, p structPlan, rv reflect.Value) error {
	return walk(p, rv, false, func(e planEntry, fv reflect.Value) error {
		if fv.IsZero() && !e.keepZero {
			return nil
		}
		if err := m.MarshalPath(e.path, fv.Interface()); err != nil {
			return fmt.Errorf("failed to set value to field %d: %w", e.id, err)
		}
		return nil
	})
}

// Unmarshal fills the tagged fields of the struct v points to from the message's fields that are
// set.
func Unmarshal(m *iso8583.Message, v any) error {
	rv, err := structValue(v)
	if err != nil {
		return err
	}
	if !rv.CanSet() {
		return errors.New("data is not addressable")
	}
	return unmarshalPlan(m, planOf(rv.Type()), rv)
}

func unmarshalPlan(m *iso8583.Message, p structPlan, rv reflect.Value) error {
	return walk(p, rv, true, func(e planEntry, fv reflect.Value) error {
		f := m.GetField(e.id)
		if f == nil {
			return nil
		}
		var err error
		switch fv.Kind() {
		case reflect.Pointer, reflect.Interface:
			if fv.IsNil() {
				fv.Set(reflect.New(fv.Type().Elem()))
			}
			err = f.Unmarshal(fv.Interface())
		default:
			err = f.Unmarshal(fv)
		}
		if err != nil {
			return fmt.Errorf("failed to get value from field %d: %w", e.id, err)
		}
		return nil
	})
}
