// pinlab — struct file and file_operations.
#pragma once

#include <string>

#include "base/result.h"
#include "base/sync/atomic.h"
#include "mm/vm_flags.h"

namespace pl {

class Inode;
class Vma;
class File;

// file_operations, reduced to what mapping needs.
class FileOperations {
public:
    virtual ~FileOperations() = default;
    // ->mmap: set up vma->ops, flags (VM_PFNMAP, VM_MIXEDMAP, ...) and maybe
    // populate entries. An error fails the mmap() with it.
    virtual Status mmap(File& f, Vma& vma) const = 0;
    // The file is being closed (last reference).
    virtual void release(File&) const {}
};

class File {
public:
    File(Inode* inode, const FileOperations* fops, std::string name);
    ~File();
    File(const File&) = delete;
    File& operator=(const File&) = delete;

    Inode* const inode;               // holds a reference
    const FileOperations* const fops;
    const std::string name;           // "ext4:3", "/dev/pfnmap", ...
    void* private_data = nullptr;     // the driver's object
    void (*private_release)(void*) = nullptr;

    void get() { refs_.fetch_add(1); }
    void put();
    int refs() const { return refs_.load(); }

private:
    sync::Atomic<int> refs_{1};
};

}  // namespace pl
