package main

// The kubernetes executor driver registers itself as "kubernetes" from init(); it reads its
// settings from the pool section the agent hands every driver (pool.kubernetes, pool.min).
import _ "github.com/proteus-defense/proteus/executor/kubernetes"
