package game

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/proteus-defense/proteus/strictyaml"
	"github.com/proteus-defense/proteus/strictyaml/strictyamltest"
)

func TestReadMatrixCSV(t *testing.T) {
	tests := []struct {
		name, in string
		want     [][]float64
		err      string // exact message when non-empty
	}{
		{"one", "1", [][]float64{{1}}, ""},
		{"2x2", "1,2\n3,4\n", [][]float64{{1, 2}, {3, 4}}, ""},
		{"no final newline", "1,2\n3,4", [][]float64{{1, 2}, {3, 4}}, ""},
		{"spaces and tabs", " 1 ,\t2 \n", [][]float64{{1, 2}}, ""},
		{"exponents and signs", "-1e-3,+2.5E2,0x1p-2", [][]float64{{-0.001, 250, 0.25}}, ""},
		{"bom", "\ufeff5,6", [][]float64{{5, 6}}, ""},
		{"comments", "# header\n1,2\n  # indented\n\n3,4\n", [][]float64{{1, 2}, {3, 4}}, ""},
		{"word", "1,2\n3,x\n", nil, `A.csv:2:2: not a number "x"`},
		{"nan", "nan", nil, `A.csv:1:1: not a finite number "nan"`},
		{"inf", "1,+Inf", nil, `A.csv:1:2: not a finite number "+Inf"`},
		{"infinity", "infinity", nil, `A.csv:1:1: not a finite number "infinity"`},
		{"empty", "", nil, "A.csv: no numbers: the matrix is empty"},
		{"only comments", "#\n\n", nil, "A.csv: no numbers: the matrix is empty"},
		{"empty field", "1,", nil, "A.csv:1:2: empty field, want a number"},
		{"ragged long", "1,2\n3,4,5", nil, "A.csv:2:3: row has 3 numbers, want 2 like line 1"},
		{"ragged short", "\n1,2\n3", nil, "A.csv:3:2: row has 1 number, want 2 like line 2"},
		{"semicolon", "1;2", nil, `A.csv:1:1: not a number "1;2"`},
		{"comment after number", "1 # one", nil, `A.csv:1:1: not a number "1 # one"`},
		{"out of range", "1e400", nil, `A.csv:1:1: number "1e400" is out of range`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadMatrixCSV("A.csv", strings.NewReader(tc.in))
			if tc.err != "" {
				checkCSVError(t, err, tc.err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, tc.want, slices.Equal) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func checkCSVError(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", want)
	}
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	var fe *strictyaml.FieldError
	if !errors.Is(err, strictyaml.ErrInvalid) || !errors.As(err, &fe) {
		t.Errorf("error %v is not a *strictyaml.FieldError wrapping ErrInvalid", err)
	}
}

// Each testdata/bad-*.csv file states the expected error on its first line: "# want: ...".
func TestReadMatrixCSVBadFiles(t *testing.T) {
	strictyamltest.EachBadFile(t, "testdata/bad-*.csv", func(t *testing.T, path string, data []byte, want string) {
		_, err := ReadMatrixCSV(filepath.Base(path), bytes.NewReader(data))
		checkCSVError(t, err, want)
	})
}

func TestReadMatrixCSVGoodFile(t *testing.T) {
	f, err := os.Open("testdata/good-crlf.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ReadMatrixCSV("good-crlf.csv", f)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]float64{{1, -2.5}, {300, 0}, {0, 7}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestReadMatrixCSVReaderErrors(t *testing.T) {
	_, err := ReadMatrixCSV("A.csv", iotest.ErrReader(errors.New("disk on fire")))
	if err == nil || errors.Is(err, strictyaml.ErrInvalid) || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("read error reported as %v", err)
	}
	big := strings.NewReader(strings.Repeat("1\n", MaxCSVSize/2+1))
	if _, err := ReadMatrixCSV("A.csv", big); !errors.Is(err, strictyaml.ErrInvalid) {
		t.Errorf("oversized input: %v", err)
	}
}

// FuzzReadMatrixCSV checks that the reader never panics and that what it accepts is a
// non-empty rectangular matrix of finite numbers that forms a valid game and reads back the
// same when printed again.
func FuzzReadMatrixCSV(f *testing.F) {
	for _, s := range []string{"1,2\n3,4\n", "# c\n\n1", "1,x", "NaN", "1,2\n3", "\ufeff1", "1e999", "0x1p-2,-0\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		M, err := ReadMatrixCSV("F.csv", strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, strictyaml.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.HasPrefix(err.Error(), "F.csv:") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if err := (Bimatrix{A: M, D: M}).Validate(); err != nil {
			t.Fatalf("accepted %q but %v", in, err)
		}
		var b strings.Builder
		for _, row := range M {
			for j, v := range row {
				if j > 0 {
					b.WriteByte(',')
				}
				b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
			}
			b.WriteByte('\n')
		}
		again, err := ReadMatrixCSV("F.csv", strings.NewReader(b.String()))
		if err != nil || !slices.EqualFunc(again, M, slices.Equal) {
			t.Fatalf("round trip of %v: %v, %v", M, again, err)
		}
	})
}
