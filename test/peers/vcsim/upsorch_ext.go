// UPS-orchestrator extensions to the govmomi 0.24 simulator. build.sh copies this file into a
// private copy of Debian's source as simulator/upsorch_ext.go and makes four small edits there:
//   - VirtualMachine.ShutdownGuest        -> shutdownGuestStock (replaced below)
//   - PropertyCollector.RetrievePropertiesEx -> retrievePropertiesExStock (replaced below, with paging)
//   - HostSystem.EnterMaintenanceModeTask -> enterMaintenanceModeTaskStock (replaced below)
//   - Service.call consults upsorchCallHook before dispatching (licence restrictions, API down)
//
// What stock 0.24 does and a real vSphere does not, and what this file changes:
//   - guest.toolsRunningStatus is always guestToolsNotRunning: here Tools run whenever a VM is
//     powered on, except for VMs whose name starts with a -no-tools prefix; VMs named with a
//     -tools-scripts prefix report guestToolsExecutingScripts (Tools up, running a script).
//   - ShutdownGuest powers the VM off at once: here it needs running Tools (ToolsUnavailable
//     otherwise, as on a real host), returns at once and the guest powers off after
//     -guest-shutdown-delay; guests named with an -ignore-shutdown prefix never do. While the
//     guest OS shuts down its Tools run the power-off scripts (guestToolsExecutingScripts) for
//     the first half of the delay and are stopped (guestToolsNotRunning) for the second, as a
//     real guest's Tools stop before the VM powers off.
//   - EnterMaintenanceMode_Task succeeds at once: here it waits, as a real host does, while any
//     VM on the host is powered on (nothing migrates them: a standalone host, or a cluster
//     whose other hosts are entering maintenance too), and fails with Timedout after its
//     timeout (seconds; 0 = wait for ever). Powered-off and suspended VMs may stay.
//   - ShutdownHost_Task / RebootHost_Task are missing (MethodNotFound): here they refuse with
//     InvalidState unless the host is in maintenance mode or force is set, power off the host's
//     VMs, and leave the host poweredOff / notResponding (shutdown).
//   - RetrievePropertiesEx ignores options.maxObjects and ContinueRetrievePropertiesEx is missing:
//     here results are paged with a token, as vCenter does.
//   - -free-license: the licence of a free ESXi 6/7/8 (editionKey esx.hypervisor.cpuPackageCoreLimited,
//     "VMware vSphere 7 Hypervisor"), with which every state-changing call fails with
//     RestrictedVersion, as on a real free ESXi.
//   - The API never goes away: here a standalone ESXi (-esx) stops answering (connections are
//     closed) once the host is shut down, and a vCenter stops answering while the VM named by
//     -api-vm (its appliance) is not powered on; -api-down-for lets it answer again after that
//     long, so a test can read the end state.
//   - -place vm=host moves a VM onto a host of its cluster (stock placement is random).
package simulator

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// UpsorchOptions configure the extensions; see main.go for the flags.
type UpsorchOptions struct {
	GuestShutdownDelay     time.Duration
	NoToolsPrefixes        []string
	ScriptsPrefixes        []string
	IgnoreShutdownPrefixes []string
	FreeLicense            bool
	// APIVM: the vCenter appliance; the API is down while it is not powered on.
	APIVM string
	// APIDownFor: how long the API stays down (0: for good).
	APIDownFor time.Duration
}

var upsorch UpsorchOptions

// upsorchCallHook, when set, may answer a call before it is dispatched (build.sh wires it into Service.call).
var upsorchCallHook func(ctx *Context, method *Method) soap.HasFault

func hasAnyPrefix(name string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------------------------
// VMware Tools follow the power state.

// upsorchGuestPhase: VMs whose guest OS is shutting down, and the Tools status it shows (by VM id).
var upsorchGuestPhase = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

func upsorchSetPhase(vm *VirtualMachine, status string) {
	upsorchGuestPhase.Lock()
	if status == "" {
		delete(upsorchGuestPhase.m, vm.Self.Value)
	} else {
		upsorchGuestPhase.m[vm.Self.Value] = status
	}
	upsorchGuestPhase.Unlock()
	upsorchSyncTools(vm)
}

func upsorchSyncTools(vm *VirtualMachine) {
	status := string(types.VirtualMachineToolsRunningStatusGuestToolsNotRunning)
	tools := types.VirtualMachineToolsStatusToolsNotRunning
	state := "notRunning"
	upsorchGuestPhase.Lock()
	phase, shuttingDown := upsorchGuestPhase.m[vm.Self.Value]
	if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		delete(upsorchGuestPhase.m, vm.Self.Value)
		shuttingDown = false
	}
	upsorchGuestPhase.Unlock()
	if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn && !hasAnyPrefix(vm.Name, upsorch.NoToolsPrefixes) {
		status, tools, state = string(types.VirtualMachineToolsRunningStatusGuestToolsRunning), types.VirtualMachineToolsStatusToolsOk, "running"
		if hasAnyPrefix(vm.Name, upsorch.ScriptsPrefixes) {
			status = string(types.VirtualMachineToolsRunningStatusGuestToolsExecutingScripts)
		}
		if shuttingDown {
			status, state = phase, "shuttingDown"
			if phase == string(types.VirtualMachineToolsRunningStatusGuestToolsNotRunning) {
				tools = types.VirtualMachineToolsStatusToolsNotRunning
			}
		}
	}
	if vm.Guest == nil {
		vm.Guest = &types.GuestInfo{}
	}
	if vm.Guest.ToolsRunningStatus == status && vm.Guest.ToolsStatus == tools {
		return
	}
	if vm.Summary.Guest != nil {
		vm.Summary.Guest.ToolsRunningStatus = status
		vm.Summary.Guest.ToolsStatus = tools
	}
	Map.Update(vm, []types.PropertyChange{
		{Name: "guest.toolsRunningStatus", Val: status},
		{Name: "guest.toolsStatus", Val: tools},
		{Name: "guest.guestState", Val: state},
	})
}

// powerWatcher is a registry handler: every power-state change of a VM re-derives its Tools status.
type powerWatcher struct{}

func (powerWatcher) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "UpsorchPowerWatcher", Value: "upsorch"}
}
func (powerWatcher) PutObject(mo.Reference)                     {}
func (powerWatcher) RemoveObject(types.ManagedObjectReference) {}
func (powerWatcher) UpdateObject(obj mo.Reference, changes []types.PropertyChange) {
	if obj.Reference().Type != "VirtualMachine" {
		return
	}
	for _, c := range changes {
		if c.Name == "runtime.powerState" {
			if vm, ok := Map.Get(obj.Reference()).(*VirtualMachine); ok {
				upsorchSyncTools(vm)
			}
			return
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Guest shutdown that takes time, needs Tools, and can be ignored.

func (vm *VirtualMachine) ShutdownGuest(ctx *Context, req *types.ShutdownGuest) soap.HasFault {
	body := &methods.ShutdownGuestBody{}
	if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		body.Fault_ = Fault("", &types.InvalidPowerState{RequestedState: types.VirtualMachinePowerStatePoweredOn, ExistingState: vm.Runtime.PowerState})
		return body
	}
	running := vm.Guest != nil && (vm.Guest.ToolsRunningStatus == string(types.VirtualMachineToolsRunningStatusGuestToolsRunning) ||
		vm.Guest.ToolsRunningStatus == string(types.VirtualMachineToolsRunningStatusGuestToolsExecutingScripts))
	if !running {
		body.Fault_ = Fault("Cannot complete operation because VMware Tools is not running in this virtual machine.", &types.ToolsUnavailable{})
		return body
	}
	body.Res = new(types.ShutdownGuestResponse)
	if hasAnyPrefix(vm.Name, upsorch.IgnoreShutdownPrefixes) {
		return body // the guest never reacts, like an OS that ignores the request
	}
	ref := vm.Self
	upsorchSetPhase(vm, string(types.VirtualMachineToolsRunningStatusGuestToolsExecutingScripts))
	time.AfterFunc(upsorch.GuestShutdownDelay/2, func() {
		if target, ok := Map.Get(ref).(*VirtualMachine); ok {
			Map.WithLock(target, func() {
				if target.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
					upsorchSetPhase(target, string(types.VirtualMachineToolsRunningStatusGuestToolsNotRunning))
				}
			})
		}
	})
	time.AfterFunc(upsorch.GuestShutdownDelay, func() {
		target, ok := Map.Get(ref).(*VirtualMachine)
		if !ok {
			return
		}
		Map.WithLock(target, func() {
			if target.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
				target.shutdownGuestStock(internalContext, &types.ShutdownGuest{This: ref})
			}
		})
	})
	return body
}

// ---------------------------------------------------------------------------------------------
// Host shutdown and reboot.

func (h *HostSystem) upsorchHostPower(reboot bool, force bool) (types.AnyType, types.BaseMethodFault) {
	if !force && !h.Runtime.InMaintenanceMode {
		return nil, &types.InvalidState{}
	}
	for _, ref := range h.Vm {
		vm, ok := Map.Get(ref).(*VirtualMachine)
		if !ok {
			continue
		}
		Map.WithLock(vm, func() {
			if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOff {
				(&powerVMTask{vm, types.VirtualMachinePowerStatePoweredOff, internalContext}).Run(nil)
			}
		})
	}
	if reboot {
		now := time.Now()
		Map.Update(h, []types.PropertyChange{{Name: "runtime.bootTime", Val: &now}})
		return nil, nil
	}
	Map.Update(h, []types.PropertyChange{
		{Name: "runtime.powerState", Val: types.HostSystemPowerStatePoweredOff},
		{Name: "runtime.connectionState", Val: types.HostSystemConnectionStateNotResponding},
	})
	return nil, nil
}

func (h *HostSystem) ShutdownHostTask(req *types.ShutdownHost_Task) soap.HasFault {
	task := CreateTask(h, "shutdownHost", func(*Task) (types.AnyType, types.BaseMethodFault) {
		return h.upsorchHostPower(false, req.Force)
	})
	return &methods.ShutdownHost_TaskBody{Res: &types.ShutdownHost_TaskResponse{Returnval: task.Run()}}
}

func (h *HostSystem) RebootHostTask(req *types.RebootHost_Task) soap.HasFault {
	task := CreateTask(h, "rebootHost", func(*Task) (types.AnyType, types.BaseMethodFault) {
		return h.upsorchHostPower(true, req.Force)
	})
	return &methods.RebootHost_TaskBody{Res: &types.RebootHost_TaskResponse{Returnval: task.Run()}}
}

// ---------------------------------------------------------------------------------------------
// Maintenance mode that waits for the host's VMs.

// upsorchPoweredOn: names of the host's VMs that keep it from entering maintenance mode.
func (h *HostSystem) upsorchPoweredOn() []string {
	var names []string
	for _, ref := range h.Vm {
		if vm, ok := Map.Get(ref).(*VirtualMachine); ok && vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
			names = append(names, vm.Name)
		}
	}
	return names
}

// upsorchRunAsync runs a task in the background (stock tasks finish inside the call), with the
// fault message a real server gives.
func upsorchRunAsync(t *Task, run func() (types.AnyType, types.BaseMethodFault, string)) {
	Map.Update(t, []types.PropertyChange{
		{Name: "info.startTime", Val: time.Now()},
		{Name: "info.state", Val: types.TaskInfoStateRunning},
	})
	go func() {
		res, fault, msg := run()
		state := types.TaskInfoStateSuccess
		var info interface{}
		if fault != nil {
			state = types.TaskInfoStateError
			info = types.LocalizedMethodFault{Fault: fault, LocalizedMessage: msg}
		}
		Map.Update(t, []types.PropertyChange{
			{Name: "info.completeTime", Val: time.Now()},
			{Name: "info.state", Val: state},
			{Name: "info.result", Val: res},
			{Name: "info.error", Val: info},
		})
	}()
}

func (h *HostSystem) EnterMaintenanceModeTask(spec *types.EnterMaintenanceMode_Task) soap.HasFault {
	task := CreateTask(h, "enterMaintenanceMode", nil)
	var deadline time.Time
	if spec.Timeout > 0 {
		deadline = time.Now().Add(time.Duration(spec.Timeout) * time.Second)
	}
	upsorchRunAsync(task, func() (types.AnyType, types.BaseMethodFault, string) {
		for {
			var blocking []string
			Map.WithLock(h, func() {
				blocking = h.upsorchPoweredOn()
				if len(blocking) == 0 && !h.Runtime.InMaintenanceMode {
					Map.Update(h, []types.PropertyChange{{Name: "runtime.inMaintenanceMode", Val: true}})
				}
			})
			if len(blocking) == 0 {
				return nil, nil, ""
			}
			if !deadline.IsZero() && time.Now().After(deadline) {
				return nil, &types.Timedout{}, fmt.Sprintf("Operation timed out. (%d powered-on VMs: %s)", len(blocking), strings.Join(blocking, ", "))
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	return &methods.EnterMaintenanceMode_TaskBody{Res: &types.EnterMaintenanceMode_TaskResponse{Returnval: task.Self}}
}

// ---------------------------------------------------------------------------------------------
// The API goes away with the machine that serves it.

var upsorchDown = struct {
	sync.Mutex
	since time.Time
}{}

func upsorchAPIDown() bool {
	down := false
	if Map.IsESX() {
		for _, e := range Map.All("HostSystem") {
			if h, ok := e.(*HostSystem); ok && h.Runtime.PowerState == types.HostSystemPowerStatePoweredOff {
				down = true
			}
		}
	} else if upsorch.APIVM != "" {
		for _, e := range Map.All("VirtualMachine") {
			if vm, ok := e.(*VirtualMachine); ok && vm.Name == upsorch.APIVM && vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
				down = true
			}
		}
	}
	upsorchDown.Lock()
	defer upsorchDown.Unlock()
	if !down {
		upsorchDown.since = time.Time{}
		return false
	}
	if upsorchDown.since.IsZero() {
		upsorchDown.since = time.Now()
	}
	return upsorch.APIDownFor <= 0 || time.Since(upsorchDown.since) < upsorch.APIDownFor
}

// upsorchHangUp closes the client's connection without an answer, as a machine going down does.
func upsorchHangUp(ctx *Context) soap.HasFault {
	if hj, ok := ctx.res.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
		}
	}
	return &serverFaultBody{Reason: Fault("the server is down", &types.HostCommunication{})}
}

// ---------------------------------------------------------------------------------------------
// Paged RetrievePropertiesEx.

type upsorchPage struct {
	rest []types.ObjectContent
	size int
	at   time.Time
}

var upsorchPages = struct {
	sync.Mutex
	m map[string]*upsorchPage
}{m: map[string]*upsorchPage{}}

// nextPage cuts objs to at most size and keeps the rest under a fresh token (at most 1000 kept, 10 min each).
func nextPage(res *types.RetrieveResult, objs []types.ObjectContent, size int) {
	res.Objects, res.Token = objs, ""
	if size <= 0 || len(objs) <= size {
		return
	}
	res.Objects = objs[:size]
	token := uuid.New().String()
	upsorchPages.Lock()
	defer upsorchPages.Unlock()
	for k, p := range upsorchPages.m {
		if time.Since(p.at) > 10*time.Minute || len(upsorchPages.m) > 1000 {
			delete(upsorchPages.m, k)
		}
	}
	upsorchPages.m[token] = &upsorchPage{rest: objs[size:], size: size, at: time.Now()}
	res.Token = token
}

func (pc *PropertyCollector) RetrievePropertiesEx(ctx *Context, r *types.RetrievePropertiesEx) soap.HasFault {
	res := pc.retrievePropertiesExStock(ctx, r)
	body, ok := res.(*methods.RetrievePropertiesExBody)
	if !ok || body.Fault_ != nil || body.Res == nil || body.Res.Returnval == nil {
		return res
	}
	nextPage(body.Res.Returnval, body.Res.Returnval.Objects, int(r.Options.MaxObjects))
	return body
}

func (pc *PropertyCollector) ContinueRetrievePropertiesEx(ctx *Context, r *types.ContinueRetrievePropertiesEx) soap.HasFault {
	body := &methods.ContinueRetrievePropertiesExBody{}
	upsorchPages.Lock()
	page, ok := upsorchPages.m[r.Token]
	delete(upsorchPages.m, r.Token)
	upsorchPages.Unlock()
	if !ok {
		body.Fault_ = Fault("", &types.InvalidArgument{InvalidProperty: "token"})
		return body
	}
	res := &types.RetrieveResult{}
	nextPage(res, page.rest, page.size)
	body.Res = &types.ContinueRetrievePropertiesExResponse{Returnval: *res}
	return body
}

func (pc *PropertyCollector) CancelRetrievePropertiesEx(ctx *Context, r *types.CancelRetrievePropertiesEx) soap.HasFault {
	upsorchPages.Lock()
	delete(upsorchPages.m, r.Token)
	upsorchPages.Unlock()
	return &methods.CancelRetrievePropertiesExBody{Res: new(types.CancelRetrievePropertiesExResponse)}
}

// ---------------------------------------------------------------------------------------------
// Free licence: read-only API.

var upsorchFreeLicense = types.LicenseManagerLicenseInfo{
	LicenseKey: "00000-00000-00000-00000-00001",
	EditionKey: "esx.hypervisor.cpuPackageCoreLimited",
	Name:       "VMware vSphere 7 Hypervisor",
	Total:      0,
	CostUnit:   "cpuPackage:32core",
	Properties: []types.KeyAnyValue{
		{Key: "ProductName", Value: "VMware ESX Server"},
		{Key: "ProductVersion", Value: "7.0"},
		{Key: "feature", Value: types.KeyValue{Key: "maxRAM:0", Value: "Up to 0 GB of memory"}},
	},
}

// upsorchRestricted: the calls a free licence refuses (everything that changes state).
func upsorchRestricted(name string) bool {
	if strings.HasSuffix(name, "_Task") {
		return true
	}
	switch name {
	case "ShutdownGuest", "RebootGuest", "StandbyGuest", "CreateFolder", "SetCustomValue":
		return true
	}
	return false
}

// ---------------------------------------------------------------------------------------------
// Setup.

// UpsorchArrange renames VMs, moves VMs into new folders (under their current folder) and onto
// hosts (vm -> host name). Call after Model.Create.
func UpsorchArrange(renames map[string]string, folders map[string][]string, places map[string]string) error {
	byName := func(name string) (*VirtualMachine, error) {
		for _, e := range Map.All("VirtualMachine") {
			if vm, ok := e.(*VirtualMachine); ok && vm.Name == name {
				return vm, nil
			}
		}
		return nil, fmt.Errorf("no VM named %q", name)
	}
	for from, to := range renames {
		vm, err := byName(from)
		if err != nil {
			return err
		}
		Map.Update(vm, []types.PropertyChange{{Name: "name", Val: to}})
	}
	for folder, names := range folders {
		for _, name := range names {
			vm, err := byName(name)
			if err != nil {
				return err
			}
			parent, ok := Map.Get(*vm.Parent).(*Folder)
			if !ok {
				return fmt.Errorf("VM %q is not in a folder", name)
			}
			var target *Folder
			if e := Map.FindByName(folder, parent.ChildEntity); e != nil {
				target, _ = e.(*Folder)
			}
			if target == nil {
				res := parent.CreateFolder(internalContext, &types.CreateFolder{This: parent.Self, Name: folder})
				if f := res.Fault(); f != nil {
					return fmt.Errorf("create folder %q: %s", folder, f.String)
				}
				target = Map.Get(res.(*methods.CreateFolderBody).Res.Returnval).(*Folder)
			}
			res := target.MoveIntoFolderTask(internalContext, &types.MoveIntoFolder_Task{This: target.Self, List: []types.ManagedObjectReference{vm.Self}})
			if f := res.Fault(); f != nil {
				return fmt.Errorf("move %q into %q: %s", name, folder, f.String)
			}
		}
	}
	for name, hostName := range places {
		vm, err := byName(name)
		if err != nil {
			return err
		}
		var to *HostSystem
		for _, e := range Map.All("HostSystem") {
			if h, ok := e.(*HostSystem); ok && h.Name == hostName {
				to = h
			}
		}
		if to == nil {
			return fmt.Errorf("no host named %q", hostName)
		}
		if from, ok := Map.Get(*vm.Runtime.Host).(*HostSystem); ok {
			Map.RemoveReference(from, &from.Vm, vm.Self)
		}
		Map.AppendReference(to, &to.Vm, vm.Self)
		ref := to.Self
		vm.Summary.Runtime.Host = &ref
		Map.Update(vm, []types.PropertyChange{{Name: "runtime.host", Val: &ref}})
	}
	return nil
}

// UpsorchEnable switches the extensions on. Call after Model.Create and UpsorchArrange.
func UpsorchEnable(opts UpsorchOptions) {
	upsorch = opts
	Map.AddHandler(powerWatcher{})
	for _, e := range Map.All("VirtualMachine") {
		if vm, ok := e.(*VirtualMachine); ok {
			upsorchSyncTools(vm)
		}
	}
	if opts.FreeLicense {
		if lm, ok := Map.Get(*Map.content().LicenseManager).(*LicenseManager); ok {
			lm.Licenses = []types.LicenseManagerLicenseInfo{upsorchFreeLicense}
		}
	}
	upsorchCallHook = func(ctx *Context, method *Method) soap.HasFault {
		if upsorchAPIDown() {
			return upsorchHangUp(ctx)
		}
		if opts.FreeLicense && upsorchRestricted(method.Name) {
			return &serverFaultBody{Reason: Fault("Current license or ESXi version prohibits execution of the requested operation.", &types.RestrictedVersion{})}
		}
		return nil
	}
}
