// vcsim for the test bed: VMware's vCenter/ESXi simulator from Debian's govmomi 0.24 source
// (golang-github-vmware-govmomi-dev ships the simulator library but no vcsim command). Built by
// build.sh in GOPATH mode against a private copy of the source that also holds upsorch_ext.go.
//
// Flags: the model (-dc, -cluster, -host, -standalone-host, -vm, -pool, -esx), the service (-l,
// -username, -password, -tlscert, -tlskey, -api-version, -delay, -trace) and the behaviour a UPS
// shutdown needs that stock 0.24 lacks (see upsorch_ext.go): -guest-shutdown-delay, -no-tools,
// -tools-scripts, -ignore-shutdown, -free-license, -api-vm, -api-down-for, plus -rename, -folder
// and -place to give VMs the names, folders and hosts a test wants. Prints "READY <url>" on stdout once it serves; stops on SIGTERM/SIGINT.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
)

// list splits "a,b,,c" into [a b c].
func list(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// pairs parses "a=b,c=d" into a map.
func pairs(s string) map[string]string {
	m := map[string]string{}
	for _, p := range list(s) {
		kv := strings.SplitN(p, "=", 2)
		if len(kv) != 2 {
			log.Fatalf("expected old=new, got %q", p)
		}
		m[kv[0]] = kv[1]
	}
	return m
}

// folders parses "prod=vm1+vm2;test=vm3" into folder -> VM names.
func folders(s string) map[string][]string {
	m := map[string][]string{}
	for _, p := range strings.Split(s, ";") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		kv := strings.SplitN(p, "=", 2)
		if len(kv) != 2 {
			log.Fatalf("expected folder=vm+vm, got %q", p)
		}
		m[kv[0]] = strings.Split(kv[1], "+")
	}
	return m
}

func main() {
	model := simulator.VPX()
	flag.IntVar(&model.Datacenter, "dc", model.Datacenter, "datacenters")
	flag.IntVar(&model.Cluster, "cluster", model.Cluster, "clusters per datacenter")
	flag.IntVar(&model.ClusterHost, "host", model.ClusterHost, "hosts per cluster")
	flag.IntVar(&model.Host, "standalone-host", model.Host, "standalone hosts per datacenter")
	flag.IntVar(&model.Machine, "vm", model.Machine, "VMs per resource pool (cluster) or standalone host")
	flag.IntVar(&model.Pool, "pool", model.Pool, "extra resource pools per compute resource")
	apiVersion := flag.String("api-version", "", "about.apiVersion to report (default: the model's)")
	esx := flag.Bool("esx", false, "simulate a standalone ESXi host instead of vCenter")
	listen := flag.String("l", "127.0.0.1:0", "listen address")
	user := flag.String("username", "", "the only username accepted (empty: any)")
	pass := flag.String("password", "", "the only password accepted (empty: any)")
	cert := flag.String("tlscert", "", "PEM certificate (default: Go's built-in test certificate)")
	key := flag.String("tlskey", "", "PEM key for -tlscert")
	delay := flag.Int("delay", 0, "delay every method by this many ms")
	flag.BoolVar(&simulator.Trace, "trace", false, "trace SOAP to stderr")

	var ext simulator.UpsorchOptions
	flag.DurationVar(&ext.GuestShutdownDelay, "guest-shutdown-delay", time.Second, "time from ShutdownGuest until the guest is powered off")
	noTools := flag.String("no-tools", "", "comma-separated VM name prefixes whose VMware Tools never run")
	scripts := flag.String("tools-scripts", "", "comma-separated VM name prefixes whose VMware Tools report guestToolsExecutingScripts")
	ignore := flag.String("ignore-shutdown", "", "comma-separated VM name prefixes whose guest ignores ShutdownGuest")
	flag.StringVar(&ext.APIVM, "api-vm", "", "vCenter model: the VM that serves the API; the API stops answering while it is not powered on")
	flag.DurationVar(&ext.APIDownFor, "api-down-for", 0, "how long the API stays down after its machine went off (0: for good)")
	place := flag.String("place", "", "move VMs onto hosts of their cluster: vm=host,vm=host")
	flag.BoolVar(&ext.FreeLicense, "free-license", false, "free vSphere Hypervisor licence: the API is read-only (RestrictedVersion)")
	rename := flag.String("rename", "", "rename VMs: old=new,old=new")
	folder := flag.String("folder", "", "move VMs into new folders: prod=vm1+vm2;test=vm3")
	flag.Parse()
	ext.NoToolsPrefixes = list(*noTools)
	ext.IgnoreShutdownPrefixes = list(*ignore)
	ext.ScriptsPrefixes = list(*scripts)

	if *esx {
		m := simulator.ESX()
		m.Machine = model.Machine
		model = m
	}
	if *apiVersion != "" {
		model.ServiceContent.About.ApiVersion = *apiVersion
	}
	model.DelayConfig.Delay = *delay
	if err := model.Create(); err != nil {
		log.Fatal(err)
	}
	if err := simulator.UpsorchArrange(pairs(*rename), folders(*folder), pairs(*place)); err != nil {
		log.Fatal(err)
	}
	simulator.UpsorchEnable(ext)

	u := &url.URL{Host: *listen}
	if *user != "" {
		u.User = url.UserPassword(*user, *pass)
	}
	model.Service.Listen = u
	model.Service.TLS = new(tls.Config)
	if *cert != "" {
		c, err := tls.LoadX509KeyPair(*cert, *key)
		if err != nil {
			log.Fatal(err)
		}
		model.Service.TLS.Certificates = []tls.Certificate{c}
	}
	s := model.Service.NewServer()
	served := *s.URL
	served.User = nil
	fmt.Printf("READY %s\n", served.String())
	os.Stdout.Sync()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	s.Close()
	model.Remove()
}
