//go:build !node

package cli

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/posture"
)

// SARIF 2.1.0, the subset code-scanning tools read.
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool    sarifTool     `json:"tool"`
	Results []sarifResult `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	InformationURI string      `json:"informationUri"`
	Rules          []sarifRule `json:"rules"`
}

type sarifText struct {
	Text string `json:"text"`
}

type sarifRule struct {
	ID                   string         `json:"id"`
	Name                 string         `json:"name"`
	ShortDescription     sarifText      `json:"shortDescription"`
	FullDescription      sarifText      `json:"fullDescription"`
	Help                 sarifText      `json:"help"`
	DefaultConfiguration sarifLevel     `json:"defaultConfiguration"`
	Properties           map[string]any `json:"properties,omitempty"`
}

type sarifLevel struct {
	Level string `json:"level"`
}

type sarifResult struct {
	RuleID    string          `json:"ruleId"`
	RuleIndex int             `json:"ruleIndex"`
	Level     string          `json:"level"`
	Message   sarifText       `json:"message"`
	Locations []sarifLocation `json:"locations"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical  `json:"physicalLocation"`
	LogicalLocations []sarifLogical `json:"logicalLocations,omitempty"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
	Region           *sarifRegion  `json:"region,omitempty"`
}

type sarifArtifact struct {
	URI string `json:"uri"`
}

type sarifRegion struct {
	StartLine int `json:"startLine"`
}

type sarifLogical struct {
	FullyQualifiedName string `json:"fullyQualifiedName"`
	Kind               string `json:"kind"`
}

// sarifLevelOf maps a mode: a violation that deny would block is an error.
func sarifLevelOf(m posture.Mode) string {
	if m == posture.Deny {
		return "error"
	}
	return "warning"
}

// securitySeverity is GitHub code scanning's 0-10 score property.
var securitySeverity = map[event.Severity]string{event.High: "8.0", event.Medium: "5.5", event.Low: "3.0", event.Informational: "1.0"}

// writeSARIF writes one rule per recommendation and one result per
// violation, located at the file and the line where the object's document
// starts.
func writeSARIF(w io.Writer, results []scanResult) error {
	recs := posture.Recommendations()
	ruleIndex := make(map[string]int, len(recs))
	rules := make([]sarifRule, len(recs))
	for i, r := range recs {
		ruleIndex[r.ID] = i
		level := sarifLevelOf(r.DefaultMode)
		if r.DefaultMode == posture.Disabled {
			level = "none"
		}
		rules[i] = sarifRule{
			ID: r.ID, Name: r.Title,
			ShortDescription:     sarifText{r.Title},
			FullDescription:      sarifText{r.Description},
			Help:                 sarifText{r.Remediation},
			DefaultConfiguration: sarifLevel{level},
			Properties: map[string]any{
				"tags":              []string{"security", "kubernetes"},
				"security-severity": securitySeverity[r.Severity],
			},
		}
	}
	run := sarifRun{
		Tool:    sarifTool{Driver: sarifDriver{Name: "vigil", InformationURI: "https://github.com/vigil-sec/vigil", Rules: rules}},
		Results: []sarifResult{},
	}
	for i := range results {
		r := &results[i]
		for _, v := range r.Violations {
			loc := sarifLocation{
				PhysicalLocation: sarifPhysical{ArtifactLocation: sarifArtifact{URI: filepath.ToSlash(r.File)}},
				LogicalLocations: []sarifLogical{{FullyQualifiedName: r.Workload.String(), Kind: "object"}},
			}
			if r.Line > 0 {
				loc.PhysicalLocation.Region = &sarifRegion{StartLine: r.Line}
			}
			run.Results = append(run.Results, sarifResult{
				RuleID: r.Recommendation, RuleIndex: ruleIndex[r.Recommendation], Level: sarifLevelOf(r.Mode),
				Message:   sarifText{r.Workload.String() + ": " + v},
				Locations: []sarifLocation{loc},
			})
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(sarifLog{Schema: "https://json.schemastore.org/sarif-2.1.0.json", Version: "2.1.0", Runs: []sarifRun{run}})
}

// JUnit XML as CI systems read it: a testsuite per workload, a testcase per
// recommendation, a failure per unhealthy one.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	File     string      `xml:"file,attr,omitempty"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	ClassName string        `xml:"classname,attr"`
	File      string        `xml:"file,attr,omitempty"`
	Line      int           `xml:"line,attr,omitempty"`
	Failure   *junitFailure `xml:"failure"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

func writeJUnit(w io.Writer, results []scanResult) error {
	doc := junitSuites{Name: "vigil scan"}
	suite := map[string]int{} // file + workload -> index in doc.Suites
	for i := range results {
		r := &results[i]
		key := r.File + "\x00" + r.Workload.String()
		si, ok := suite[key]
		if !ok {
			si = len(doc.Suites)
			suite[key] = si
			doc.Suites = append(doc.Suites, junitSuite{Name: r.Workload.String(), File: filepath.ToSlash(r.File)})
		}
		s := &doc.Suites[si]
		c := junitCase{Name: r.Recommendation, ClassName: r.Workload.String(), File: filepath.ToSlash(r.File), Line: r.Line}
		if !r.Healthy {
			rec, _ := posture.Lookup(r.Recommendation)
			c.Failure = &junitFailure{
				Message: fmt.Sprintf("%s (%s, %d violations)", rec.Title, r.Mode, len(r.Violations)),
				Type:    r.Recommendation,
				Text:    strings.Join(r.Violations, "\n"),
			}
			s.Failures++
			doc.Failures++
		}
		s.Tests++
		doc.Tests++
		s.Cases = append(s.Cases, c)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
