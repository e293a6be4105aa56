package main

// The docker executor driver registers itself as "docker" from init().
import _ "github.com/proteus-defense/proteus/executor/docker"
