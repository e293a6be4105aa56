module github.com/proteus-defense/proteus

go 1.26.8

require (
	github.com/spf13/cobra v1.9.1
	gonum.org/v1/gonum v0.16.0
	gopkg.in/yaml.v3 v3.0.1
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/pflag v1.0.6 // indirect
)
