package ship

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
)

// checkShape walks JSON input against the Go type it is meant for and
// reports the first problem with its full path ("alerts[3].first_seen"):
// unknown fields (matched case-sensitively, unlike encoding/json),
// duplicate fields, values of the wrong type, numbers out of range and
// times that are not RFC 3339 strings. It checks no more than
// encoding/json with DisallowUnknownFields, except case and duplicates;
// its job is the precise message.
func checkShape(data []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	w := shapeWalker{dec: dec}
	return w.value(t, "")
}

type shapeWalker struct {
	dec *json.Decoder
}

var timeType = reflect.TypeFor[time.Time]()

func (w *shapeWalker) token() (json.Token, error) {
	tok, err := w.dec.Token()
	if err != nil {
		var syn *json.SyntaxError
		switch {
		case errors.As(err, &syn):
			return nil, fmt.Errorf("malformed JSON at byte %d: %v", syn.Offset, syn)
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil, errors.New("malformed JSON: unexpected end of input")
		}
		return nil, err
	}
	return tok, nil
}

func where(path string) string {
	if path == "" {
		return "batch"
	}
	return path
}

func (w *shapeWalker) value(t reflect.Type, path string) error {
	tok, err := w.token()
	if err != nil {
		return err
	}
	return w.valueFrom(tok, t, path)
}

func (w *shapeWalker) valueFrom(tok json.Token, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		if tok == nil {
			return nil
		}
		t = t.Elem()
	}
	if t == timeType {
		s, ok := tok.(string)
		if !ok {
			return fmt.Errorf("%s: want an RFC 3339 time string, got %s", where(path), describe(tok))
		}
		if _, err := time.Parse(time.RFC3339, s); err != nil {
			return fmt.Errorf("%s: %q is not an RFC 3339 time", where(path), clip(s))
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Interface:
		return w.skip(tok)
	case reflect.String:
		if _, ok := tok.(string); !ok && tok != nil {
			return fmt.Errorf("%s: want a string, got %s", where(path), describe(tok))
		}
		return nil
	case reflect.Bool:
		if _, ok := tok.(bool); !ok && tok != nil {
			return fmt.Errorf("%s: want true or false, got %s", where(path), describe(tok))
		}
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return checkNumber(tok, t, path)
	case reflect.Slice:
		if tok == nil {
			return nil
		}
		if tok != json.Delim('[') {
			return fmt.Errorf("%s: want an array, got %s", where(path), describe(tok))
		}
		for i := 0; ; i++ {
			tok, err := w.token()
			if err != nil {
				return err
			}
			if tok == json.Delim(']') {
				return nil
			}
			if err := w.valueFrom(tok, t.Elem(), path+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
	case reflect.Map:
		if tok == nil {
			return nil
		}
		if tok != json.Delim('{') {
			return fmt.Errorf("%s: want an object, got %s", where(path), describe(tok))
		}
		for {
			tok, err := w.token()
			if err != nil {
				return err
			}
			if tok == json.Delim('}') {
				return nil
			}
			key := tok.(string) // the decoder guarantees object keys are strings
			if err := w.value(t.Elem(), path+"["+strconv.Quote(clip(key))+"]"); err != nil {
				return err
			}
		}
	case reflect.Struct:
		if tok == nil {
			return nil
		}
		if tok != json.Delim('{') {
			return fmt.Errorf("%s: want an object, got %s", where(path), describe(tok))
		}
		fields := jsonFields(t)
		seen := map[string]bool{}
		for {
			tok, err := w.token()
			if err != nil {
				return err
			}
			if tok == json.Delim('}') {
				return nil
			}
			key := tok.(string)
			sub := key
			if path != "" {
				sub = path + "." + key
			}
			ft, ok := fields[key]
			if !ok {
				return fmt.Errorf("%s: unknown field", clip(sub))
			}
			if seen[key] {
				return fmt.Errorf("%s: duplicate field", sub)
			}
			seen[key] = true
			if err := w.value(ft, sub); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("%s: cannot check a %s", where(path), t)
}

// skip consumes the rest of a value of any shape whose first token is tok.
func (w *shapeWalker) skip(tok json.Token) error {
	if tok != json.Delim('{') && tok != json.Delim('[') {
		return nil
	}
	for depth := 1; depth > 0; {
		tok, err := w.token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

func checkNumber(tok json.Token, t reflect.Type, path string) error {
	if tok == nil {
		return nil
	}
	n, ok := tok.(json.Number)
	if !ok {
		return fmt.Errorf("%s: want a number, got %s", where(path), describe(tok))
	}
	s := n.String()
	var err error
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		_, err = strconv.ParseInt(s, 10, t.Bits())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		_, err = strconv.ParseUint(s, 10, t.Bits())
	default:
		var f float64
		f, err = strconv.ParseFloat(s, t.Bits())
		if err == nil && (math.IsInf(f, 0) || math.IsNaN(f)) {
			err = errors.New("out of range")
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %s is not a valid %s", where(path), clip(s), t.Kind())
	}
	return nil
}

func describe(tok json.Token) string {
	switch v := tok.(type) {
	case nil:
		return "null"
	case json.Delim:
		if v == '{' {
			return "an object"
		}
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	}
	return fmt.Sprintf("%T", tok)
}

var fieldCache sync.Map // reflect.Type -> map[string]reflect.Type

// jsonFields maps the JSON names of t's exported fields to their types.
// The wire types have no embedded structs and no custom unmarshalers.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
	fieldCache.Store(t, m)
	return m
}

// exactKeys reports whether every object that decodes into a struct uses
// the fields' exact JSON names, each at most once. It runs on every
// accepted batch, so it is a plain byte scanner rather than checkShape's
// token walk (a quarter of the cost of decoding instead of three times
// it), and it assumes data is valid JSON, which json.Decode established.
func exactKeys(data []byte, t reflect.Type) (ok bool) {
	defer func() {
		// Not expected (fuzzed against checkShape), but a bug here must
		// cost one request, not the server: checkShape then explains.
		if recover() != nil {
			ok = false
		}
	}()
	s := keyScanner{data: data}
	return s.value(t)
}

type keyScanner struct {
	data []byte
	pos  int
}

func (s *keyScanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// str consumes a string and returns its raw contents.
func (s *keyScanner) str() (raw []byte, escaped bool) {
	s.pos++ // opening quote
	start := s.pos
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case '\\':
			escaped = true
			s.pos += 2
		case '"':
			raw = s.data[start:s.pos]
			s.pos++
			return raw, escaped
		default:
			s.pos++
		}
	}
	return s.data[start:], escaped
}

// skip consumes one value of any shape.
func (s *keyScanner) skip() {
	s.ws()
	depth := 0
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case '"':
			s.str()
		case '{', '[':
			depth++
			s.pos++
		case '}', ']':
			if depth == 0 {
				return
			}
			depth--
			s.pos++
		case ',':
			if depth == 0 {
				return
			}
			s.pos++
		default:
			s.pos++
		}
		if depth == 0 {
			s.ws()
			if s.pos < len(s.data) {
				switch s.data[s.pos] {
				case ',', '}', ']':
					return
				}
			}
		}
	}
}

func (s *keyScanner) isNull() bool {
	if s.pos < len(s.data) && s.data[s.pos] == 'n' {
		s.pos += 4
		return true
	}
	return false
}

func (s *keyScanner) value(t reflect.Type) bool {
	s.ws()
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct && t != timeType:
		if s.isNull() {
			return true
		}
		fields := jsonFieldIndex(t)
		var seen uint64
		s.pos++ // {
		for {
			s.ws()
			if s.data[s.pos] == '}' {
				s.pos++
				return true
			}
			if s.data[s.pos] == ',' {
				s.pos++
				s.ws()
			}
			raw, escaped := s.str()
			f, ok := fields.index[string(raw)] // no allocation
			if escaped {
				var key string
				if json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &key) != nil {
					return false
				}
				f, ok = fields.index[key]
			}
			if !ok || seen&(1<<f) != 0 {
				return false
			}
			seen |= 1 << f
			s.ws()
			s.pos++ // :
			if !s.value(fields.types[f]) {
				return false
			}
		}
	case t.Kind() == reflect.Slice || (t.Kind() == reflect.Map && needsKeyCheck(t.Elem())):
		if s.isNull() {
			return true
		}
		s.pos++ // [ or {
		for {
			s.ws()
			switch s.data[s.pos] {
			case ']', '}':
				s.pos++
				return true
			case ',':
				s.pos++
				s.ws()
			}
			if t.Kind() == reflect.Map {
				s.str()
				s.ws()
				s.pos++ // :
			}
			if !s.value(t.Elem()) {
				return false
			}
		}
	default:
		s.skip()
		return true
	}
}

// needsKeyCheck tells whether values of t can hold structs.
func needsKeyCheck(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct && t != timeType
}

type fieldIndex struct {
	index map[string]int
	types []reflect.Type
}

var fieldIndexCache sync.Map // reflect.Type -> *fieldIndex

func jsonFieldIndex(t reflect.Type) *fieldIndex {
	if fi, ok := fieldIndexCache.Load(t); ok {
		return fi.(*fieldIndex)
	}
	fi := &fieldIndex{index: map[string]int{}}
	for name, ft := range jsonFields(t) {
		fi.index[name] = len(fi.types)
		fi.types = append(fi.types, ft)
	}
	if len(fi.types) > 64 {
		panic("ship: " + t.String() + " has more than 64 JSON fields")
	}
	fieldIndexCache.Store(t, fi)
	return fi
}
