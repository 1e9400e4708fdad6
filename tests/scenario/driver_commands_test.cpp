// Driver commands in scenarios (src/scenario/driver_commands.cpp): per
// driver, a small inline scenario that passes on the upstream behaviour, one
// whose expectation fails, and bad input that must be a located error (parse
// time) or a failed step (run time), never a crash. The rules each pass case
// relies on are named next to it.
#include <gtest/gtest.h>

#include "scenario_test_util.h"

namespace pl::scenario::test {
namespace {

constexpr const char* kSmall = "config ram=256M hugetlb_2m=0 hugetlb_1g=0\ntask A\n";

// Runs kSmall + body; the single result.
ScenarioResult one(const std::string& body, const std::string& head = kSmall) {
    RunSummary r = run(head + body);
    EXPECT_EQ(r.results.size(), 1u) << verdicts(r);
    if (r.results.empty()) return {};
    return r.results[0];
}

void expect_pass(const std::string& body, const std::string& head = kSmall) {
    const ScenarioResult r = one(body, head);
    EXPECT_EQ(r.verdict, Verdict::Pass) << r.reason << "\n" << r.detail;
}

// A failed step whose reason starts with "LINE:COL: " and contains `what`.
void expect_fail_at(const std::string& body, const std::string& loc, const std::string& what,
                    const std::string& head = kSmall) {
    const ScenarioResult r = one(body, head);
    EXPECT_EQ(r.verdict, Verdict::Fail) << r.reason;
    EXPECT_EQ(r.reason.rfind(loc, 0), 0u) << r.reason;
    EXPECT_NE(r.reason.find(what), std::string::npos) << r.reason;
}

// ---- io_uring (io_uring/rsrc.c io_sqe_buffer_register(): FOLL_WRITE|FOLL_LONGTERM pins)

TEST(DriverCommands, IoUringRegisterPinsAndFixedWriteReadsTheBuffer) {
    expect_pass(R"(A: buf = mmap 8K rw private anon
A: write buf "ring"
A: R = io_uring_setup 8
expect io_uring_register_buffers R buf 4K buf+4K 4K == 0
expect page A:buf maybe_dma_pinned
expect io_uring_buffer_segments R 1 == 1
expect locked_vm user == 4          # the 2 buffer pages and the ring's own 2 (io_create_region())
F = open "ext4" 8K
expect io_uring_write_fixed R F 0 buf 4K 0 == 4096
expect pread F 0 4 == "ring"
expect io_uring_unregister_buffers R == 0
expect not page A:buf maybe_dma_pinned
expect io_uring_unregister_buffers R == -ENXIO
)");
}

TEST(DriverCommands, IoUringBadHandlesAreFailedStepsNotCrashes) {
    // A number that no command minted, and a handle of another kind.
    expect_fail_at("A: R = io_uring_setup 8\nexpect io_uring_exit 42 == 0\n", "4:22:", "42 is not an io_uring ring");
    expect_fail_at("P = pipe\nexpect io_uring_exit P == 0\n", "4:22:", "is a pipe, not an io_uring ring");
    expect_fail_at("A: R = io_uring_setup 8\nio_uring_exit R\nio_uring_exit R\n", "5:15:", "is closed");
    // An odd iovec list.
    expect_fail_at("A: buf = mmap 4K rw private anon\nA: R = io_uring_setup 8\nio_uring_register_buffers R buf 4K buf\n",
                   "5:1:", "ADDR LEN pairs");
    // io_uring_setup()'s own errors are results, as the host's: entries 0
    // (io_uring_fill_params() -EINVAL), rings over RLIMIT_MEMLOCK
    // (io_create_region() -ENOMEM).
    expect_pass("A: R = io_uring_setup 0\nexpect R == -EINVAL\nA: set_rlimit_memlock 4K\n"
                "A: R = io_uring_setup 4\nexpect R == -ENOMEM\n");
}

TEST(DriverCommands, DriverArgumentTypesAreCheckedBeforeRunning) {
    Scenario s;
    EXPECT_NE(parse_error("task A\nA: R = io_uring_setup \"eight\"\n", &s).find("expected an integer"), std::string::npos);
    EXPECT_NE(parse_error("task A\nio_uring_read_fixed 1 2 0 0 4K 0\n").find("expected a file"), std::string::npos);
    EXPECT_NE(parse_error("task A\nA: C = vfio_open\nvfio_map_dma C 0 0 4K readwrite\n").find("end of vfio_map_dma"), std::string::npos);
    EXPECT_NE(parse_error("task A\nttm_bo_create 2M sideways\n").find("end of ttm_bo_create"), std::string::npos);
    EXPECT_EQ(parse_error("task A\nB = ttm_bo_create 2M vram no_huge\nA: a = mmap 64K rw shared file B\n"), "");
}

// ---- vfio (vfio_iommu_type1.c vfio_pin_pages_remote(): long-term, locked_vm)

TEST(DriverCommands, VfioMapDmaPinsAndDeviceDmaGoesThroughTheIommu) {
    expect_pass(R"(A: buf = mmap 8K rw private anon
A: write buf "vfio"
A: C = vfio_open
expect vfio_map_dma C 0x10000 buf 8K read write == 0
expect locked_vm == 2
expect vfio_dma_read C 0x10000 4 == "vfio"
expect vfio_dma_write C 0x10004 "!" == 1
expect A: read buf 5 == "vfio!"
expect vfio_dma_read C 0x90000 4 == -EFAULT
expect vfio_unmap_dma C 0x10000 8K == 8192
expect locked_vm == 0
vfio_close C
)");
    expect_fail_at("A: buf = mmap 8K rw private anon\nA: C = vfio_open\nexpect vfio_map_dma C 0x1000 buf 8K read "
                   "write == 1\n",
                   "5:", "expected 1, got 0");
    expect_fail_at("A: C = vfio_open\nvfio_close C\nvfio_dma_read C 0 4\n", "5:15:", "is closed");
}

// ---- vmsplice (fs/splice.c: GET references) and process_vm_readv/writev

TEST(DriverCommands, VmspliceAndProcessVmAccess) {
    expect_pass(R"(task B
A: buf = mmap 8K rw private anon
A: write buf "spliced"
P = pipe
A: n = vmsplice P buf 4K
expect n == 4096
expect pipe_nr_bufs P == 1
expect not page A:buf maybe_dma_pinned
expect pipe_read P 7 == "spliced"
B: dst = mmap 4K rw private anon
A: ptrace_allowed false
B: r = process_vm_readv "A" dst buf 7
expect r == -EPERM
A: ptrace_allowed true
B: r2 = process_vm_readv "A" dst buf 7
expect r2 == 7
expect B: read dst 7 == "spliced"
)");
    // An unknown target task is a failed step located at the argument.
    expect_fail_at("A: buf = mmap 4K rw private anon\nA: r = process_vm_readv \"Z\" buf buf 4\n", "4:25:",
                   "task 'Z' does not exist");
}

// ---- memlock, RDMA umem (ib_umem_get(): pinned_vm against RLIMIT_MEMLOCK)

TEST(DriverCommands, IbUmemChargesPinnedVmAgainstTheLimit) {
    expect_pass(R"(A: buf = mmap 16K rw private anon
A: write buf "umem"
A: set_rlimit_memlock 8K
A: U = ib_umem_get buf 16K local_write
expect U == -ENOMEM
A: cap_ipc_lock true
A: V = ib_umem_get buf 16K local_write
expect V > 0
expect pinned_vm == 4
expect ib_umem_dma_read V 0 4 == "umem"
expect ib_umem_nents V >= 1
ib_umem_release V
expect pinned_vm == 0
A: W = ib_umem_get buf 4K on_demand
expect W == -EOPNOTSUPP
)");
}

// ---- dma-buf heaps and TTM (files usable as mmap backings)

TEST(DriverCommands, DmaHeapAndTtmBuffersAreFilesForMmap) {
    expect_pass(R"(D = dma_heap_alloc "system" 64K
expect dma_buf_size D == 64K
A: m = mmap 64K rw shared file D
A: write m "heap"
expect dma_buf_device_read D 0 4 == "heap"
expect dma_buf_device_write D 0 "dev!" == 4
expect A: read m 4 == "dev!"
B = ttm_bo_create 2M
A: t = mmap 2M rw shared file B
A: write t "ttm"
expect ttm_bo_read B 0 3 == "ttm"
expect ttm_bo_placement B == 0
expect ttm_bo_move B vram == 0
expect ttm_bo_placement B == 1
expect A: read t 3 == "ttm"
A: munmap t 2M
ttm_bo_put B
)");
    // The scenario's bo reference can be put once; a non-bo file is refused.
    expect_fail_at("B = ttm_bo_create 64K\nttm_bo_put B\nttm_bo_put B\n", "5:12:", "already put");
    expect_fail_at("F = open \"ext4\" 4K\nttm_bo_put F\n", "4:12:", "not a TTM buffer object");
    expect_fail_at("B = ttm_bo_create 64K\nttm_bo_move B\n", "4:1:", "one placement");
    expect_fail_at("D = dma_heap_alloc \"nosuch\" 4K\n", "3:5:", "dma_heap_alloc failed");
}

// ---- videobuf2 USERPTR (vb2_create_framevec(): frame vectors)

TEST(DriverCommands, Videobuf2CaptureIntoUserMemory) {
    expect_pass(R"(A: buf = mmap 8K rw private anon
A: Q = vb2_queue_new 4K dma_sg capture
expect vb2_reqbufs Q 2 == 2
expect vb2_dqbuf Q == -EAGAIN
expect vb2_qbuf Q 0 buf 4K == 0
expect page A:buf maybe_dma_pinned
expect vb2_device_dma Q "frame" == 5
expect vb2_dqbuf Q == 0
expect A: read buf 5 == "frame"
vb2_queue_close Q
expect not page A:buf maybe_dma_pinned
)");
    expect_fail_at("A: Q = vb2_queue_new 4K vmalloc dma_sg\n", "3:8:", "one of vmalloc, dma_contig, dma_sg");
}

// ---- O_DIRECT (iomap_dio_rw(): pin_user_pages_fast, released at completion)

TEST(DriverCommands, DirectIoInFlightHoldsPinsUntilCompletion) {
    expect_pass(R"(F = open "ext4" 64K
pwrite F 0 "disk"
fsync F
A: buf = mmap 8K rw private anon
A: write buf "user"
A: D = direct_read F buf 4K 0 inflight
expect D > 0
expect pins "direct_io" == 1
expect A: read buf 4 == "user"
expect dio_complete D == 4096
expect pins "direct_io" == 0
expect A: read buf 4 == "disk"
A: n = direct_write F buf+1 512 0
expect n == -EINVAL
)");
    // (The file has data: a read over a hole copies zeroes without a pin
    // and is never in flight, iomap_dio_hole_iter().)
    expect_fail_at("F = open \"ext4\" 64K\npwrite F 0 \"disk\"\nfsync F\nA: buf = mmap 8K rw private anon\n"
                   "A: D = direct_read F buf 4K 0 inflight\ndio_complete D\ndio_complete D\n",
                   "9:14:", "is closed");
}

// ---- futex keys (get_futex_key(): private keys by mm+address, shared by inode+index)

TEST(DriverCommands, FutexKeysCompare) {
    expect_pass(R"(task B
A: buf = mmap 8K rw private anon
A: write buf "f"
A: K1 = get_futex_key buf
A: K2 = get_futex_key buf
A: K3 = get_futex_key buf+4
expect same_key K1 K2
expect not same_key K1 K3
F = open "tmpfs" 8K
A: s = mmap 8K rw shared file F
B: t = mmap 8K rw shared file F
A: S1 = get_futex_key s shared
B: S2 = get_futex_key t shared
expect same_key S1 S2
A: E = get_futex_key buf+1
expect E == -EINVAL
)");
    expect_fail_at("A: buf = mmap 8K rw private anon\nA: K = get_futex_key buf\nP = pipe\nexpect same_key K P\n",
                   "6:19:", "is a pipe, not a futex key");
}

// ---- frame vectors (mm/frame_vector.c; seed 000)

TEST(DriverCommands, FrameVectorsPerEra) {
    expect_pass(R"(A: buf = mmap 8K rw private anon
A: write buf fill 1 8K
V = frame_vector_create 2
A: n = get_vaddr_frames V buf 2 write -> P
expect n == 2
expect frame_vector_nr_frames V == 2
expect frame_vector_got_ref V
expect not frame_vector_is_pfns V
expect page P[0] maybe_dma_pinned
put_vaddr_frames V
expect not page A:buf maybe_dma_pinned
frame_vector_destroy V
)");
    // v4.8: GET references (get_user_pages_locked()), no pin.
    expect_pass(R"(A: buf = mmap 8K rw private anon
A: write buf fill 1 8K
V = frame_vector_create 2
A: n = get_vaddr_frames V buf 2 write -> P
expect not page P[0] maybe_dma_pinned
expect page P[0] refcount == 2
)",
                "config ram=256M hugetlb_2m=0 hugetlb_1g=0 era=v4.8\ntask A\n");
    expect_fail_at("V = frame_vector_create 0\n", "3:5:", "frame_vector_create failed");
}

// ---- pin owners, devices, the v6.4 vmas[] array

TEST(DriverCommands, PinOwnerScopesNameThePins) {
    expect_pass(R"(A: buf = mmap 4K rw private anon
A: write buf "x"
expect pin_owner_begin "mydrv" "probe" == 0
A: n = pin_user_pages_fast buf 1 FOLL_WRITE -> P
expect pin_owner_end == 0
expect pins "mydrv" == 1
unpin_user_pages P
expect pins "mydrv" == 0
)");
    // An owner scope left open is closed at the end (no crash, no stray scope).
    expect_pass("expect pin_owner_begin \"a\" \"b\" == 0\n");
}

TEST(DriverCommands, DevOpenGivesDeviceFiles) {
    expect_pass(R"(E = dev_open "iomem"
A: a = mmap 8K rw shared file E
A: write a "io"
A: n = pin_user_pages_fast a 1 FOLL_WRITE -> P
expect n == -EFAULT
)");
    expect_fail_at("E = dev_open \"nosuch\"\n", "3:5:", "dev_open failed");
}

TEST(DriverCommands, VmasOfV64DangleAfterTheCall) {
    expect_pass(R"(A: buf = mmap 8K rw private anon
A: write buf "x"
A: n = v6_4_get_user_pages buf 1 FOLL_WRITE -> P
expect n == 1
expect vmas_start 0 == 0
expect reports dangling_vma == 1
put_page P
)",
                "config ram=256M hugetlb_2m=0 hugetlb_1g=0 era=v6.4\ntask A\n");
    expect_fail_at("A: buf = mmap 8K rw private anon\nexpect vmas_start 3 == 0\n", "4:19:", "out of range",
                   "config ram=256M hugetlb_2m=0 hugetlb_1g=0 era=v6.4\ntask A\n");
}

// Handles left open at the end are released before the tasks exit: the
// run ends with no frame still allocated and no report.
TEST(DriverCommands, OpenHandlesAreReleasedAtTheEnd) {
    expect_pass(R"(A: buf = mmap 64K rw private anon
A: write buf fill 1 64K
A: R = io_uring_setup 4
expect io_uring_register_buffers R buf 8K == 0
A: C = vfio_open
expect vfio_map_dma C 0x10000 buf+8K 8K read write == 0
A: U = ib_umem_get buf+16K 8K local_write
A: Q = vb2_queue_new 4K dma_sg
expect vb2_reqbufs Q 1 == 1
expect vb2_qbuf Q 0 buf+24K 4K == 0
V = frame_vector_create 1
A: n = get_vaddr_frames V buf+28K 1 write
F = open "ext4" 64K
A: D = direct_read F buf+32K 4K 0 inflight
P = pipe
A: s = vmsplice P buf+36K 4K
)");
}

}  // namespace
}  // namespace pl::scenario::test
