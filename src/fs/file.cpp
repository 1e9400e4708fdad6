// pinlab — struct file: an open file description (upstream fs/file_table.c).
#include "fs/file.h"

#include <utility>

#include "fs/inode.h"

namespace pl {

File::File(Inode* i, const FileOperations* ops, std::string n) : inode(i), fops(ops), name(std::move(n)) {}

File::~File() = default;

// fput(): the last reference releases the file (__fput): the driver's or
// file system's ->release, the private object, then the inode reference.
void File::put() {
    if (refs_.fetch_sub(1) != 1) return;
    if (fops) fops->release(*this);
    if (private_release) private_release(private_data);
    if (inode) inode->put();
    delete this;
}

}  // namespace pl
