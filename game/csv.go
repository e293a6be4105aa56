package game

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/proteus-defense/proteus/strictyaml"
)

// MaxCSVSize bounds the input ReadMatrixCSV accepts (a 1000×1000 matrix of 20-character
// numbers fits).
const MaxCSVSize = 32 << 20

// ReadMatrixCSV reads a payoff matrix: one row per line, numbers separated by commas, spaces
// around a number ignored. Blank lines and lines whose first non-space character is '#' are
// skipped. Every row must have as many numbers as the first; NaN and ±Inf are rejected.
//
// Errors are *strictyaml.FieldError values (so they wrap strictyaml.ErrInvalid) that name the
// file, the 1-based line and the 1-based column, where the column is the number's position in
// the row (its CSV column), e.g. `A.csv:3:2: not a number "x"`. name is only used in messages.
func ReadMatrixCSV(name string, r io.Reader) ([][]float64, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxCSVSize+1))
	if err != nil {
		return nil, fmt.Errorf("game: read %s: %w", name, err)
	}
	if len(data) > MaxCSVSize {
		return nil, &strictyaml.FieldError{File: name, Msg: fmt.Sprintf("file is larger than %d bytes", MaxCSVSize)}
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var rows [][]float64
	firstLine := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), MaxCSVSize+1)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		fields := strings.Split(text, ",")
		if len(rows) > 0 && len(fields) != len(rows[0]) {
			// Point at the first extra or the first missing number.
			col := min(len(fields), len(rows[0])) + 1
			unit := "numbers"
			if len(fields) == 1 {
				unit = "number"
			}
			return nil, &strictyaml.FieldError{File: name, Line: line, Column: col,
				Msg: fmt.Sprintf("row has %d %s, want %d like line %d", len(fields), unit, len(rows[0]), firstLine)}
		}
		row := make([]float64, len(fields))
		for j, f := range fields {
			v, err := parseNumber(strings.TrimSpace(f))
			if err != nil {
				return nil, &strictyaml.FieldError{File: name, Line: line, Column: j + 1, Msg: err.Error()}
			}
			row[j] = v
		}
		if len(rows) == 0 {
			firstLine = line
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		return nil, &strictyaml.FieldError{File: name, Line: line + 1, Msg: err.Error()}
	}
	if len(rows) == 0 {
		return nil, &strictyaml.FieldError{File: name, Msg: "no numbers: the matrix is empty"}
	}
	return rows, nil
}

func parseNumber(f string) (float64, error) {
	if f == "" {
		return 0, errors.New("empty field, want a number")
	}
	v, err := strconv.ParseFloat(f, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return 0, fmt.Errorf("number %q is out of range", f)
		}
		return 0, fmt.Errorf("not a number %q", f)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("not a finite number %q", f)
	}
	return v, nil
}
