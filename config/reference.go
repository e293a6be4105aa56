package config

import "reflect"

// ReferenceDefaults is the configuration with every section given (each optional section,
// a pointer, allocated) and the defaults applied: what each field becomes when a file leaves
// it out. With elements true, each list and map of sections holds one element too (a map's
// key "NAME"), so the defaults of an element's fields show; its lists and maps themselves are
// then not their defaults. tools/configref writes docs/config-reference.md from it.
func ReferenceDefaults(elements bool) *Config {
	c := &Config{}
	fill(reflect.ValueOf(c).Elem(), elements)
	c.applyDefaults()
	return c
}

// fill allocates every nil pointer to a struct below v and, with elements, gives each slice
// and map of structs one element.
func fill(v reflect.Value, elements bool) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() && v.Type().Elem().Kind() == reflect.Struct {
			v.Set(reflect.New(v.Type().Elem()))
		}
		if !v.IsNil() {
			fill(v.Elem(), elements)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), elements)
			}
		}
	case reflect.Slice:
		if elements && v.Len() == 0 && holdsStruct(v.Type().Elem()) {
			v.Set(reflect.Append(v, reflect.New(v.Type().Elem()).Elem()))
		}
		for i := range v.Len() {
			fill(v.Index(i), elements)
		}
	case reflect.Map:
		if elements && v.Len() == 0 && holdsStruct(v.Type().Elem()) && v.Type().Key().Kind() == reflect.String {
			e := reflect.New(v.Type().Elem()).Elem()
			fill(e, elements)
			m := reflect.MakeMap(v.Type())
			m.SetMapIndex(reflect.ValueOf("NAME").Convert(v.Type().Key()), e)
			v.Set(m)
		}
	}
}

// holdsStruct is whether t is a struct, a pointer to one, or a list of them.
func holdsStruct(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct
}
