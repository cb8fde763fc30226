// Package cli builds vigil's cobra command tree. Each subcommand parses its
// flags into a package's Config and calls that package's Run(ctx); no
// business logic lives here.
package cli
