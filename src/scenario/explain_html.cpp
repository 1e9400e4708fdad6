// pinlab scenarios — `pinlab explain --html OUT`: the explained scenario as
// one self-contained page (inline data, style and script; nothing fetched),
// drawn from the same ExplainResult the text view prints.
#include <cstdio>
#include <string>

#include "scenario/explain.h"

namespace pl::scenario {
namespace {

// A JSON string literal, safe inside <script>: "</" and "<!--" cannot end
// or confuse the script element, and U+2028/2029 are escaped for old engines.
std::string js(const std::string& s) {
    std::string out = "\"";
    for (size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (c == '<') {
            out += "\\u003c";
        } else if (c == '>') {
            out += "\\u003e";
        } else if (c == '&') {
            out += "\\u0026";
        } else if (u < 0x20 || u == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", u);
            out += buf;
        } else if (u == 0xe2 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
                   (static_cast<unsigned char>(s[i + 2]) == 0xa8 || static_cast<unsigned char>(s[i + 2]) == 0xa9)) {
            out += static_cast<unsigned char>(s[i + 2]) == 0xa8 ? "\\u2028" : "\\u2029";
            i += 2;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

std::string hex(uint64_t v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
    return js(buf);
}

std::string num(int64_t v) { return std::to_string(v); }
std::string boolean(bool b) { return b ? "true" : "false"; }

std::string data_json(const ExplainResult& r) {
    std::string o = "[";
    bool first_s = true;
    for (const ExplainedScenario& s : r.scenarios) {
        o += first_s ? "" : ",";
        first_s = false;
        o += "{\"name\":" + js(s.name) + ",\"title\":" + js(s.title) + ",\"config\":" + js(s.config) +
             ",\"verdict\":" + js(std::string(verdict_name(s.outcome.verdict))) + ",\"reason\":" + js(s.outcome.reason) +
             ",\"steps\":[";
        bool first_st = true;
        for (const ExplainedStep& st : s.steps) {
            o += first_st ? "" : ",";
            first_st = false;
            o += "{\"line\":" + num(st.line) + ",\"source\":" + js(st.source) + ",\"events\":[";
            for (size_t i = 0; i < st.events.size(); ++i) {
                const trace::Event& e = st.events[i];
                o += (i ? "," : "") + std::string("{\"kind\":") + js(std::string(trace::kind_name(e.kind))) +
                     ",\"fn\":" + js(e.function) + ",\"msg\":" + js(e.message) + ",\"depth\":" + num(e.depth) + "}";
            }
            o += "],\"compared\":[";
            for (size_t i = 0; i < st.compared.size(); ++i) o += (i ? "," : "") + js(st.compared[i]);
            o += "],\"tasks\":[";
            for (size_t t = 0; t < st.tasks.size(); ++t) {
                const TaskSnap& ts = st.tasks[t];
                o += (t ? "," : "") + std::string("{\"name\":") + js(ts.name) + ",\"exited\":" + boolean(ts.exited) +
                     ",\"vmas\":[";
                for (size_t v = 0; v < ts.vmas.size(); ++v) {
                    const trace::VmaSnap& vs = ts.vmas[v];
                    o += (v ? "," : "") + std::string("{\"start\":") + hex(vs.start) + ",\"end\":" + hex(vs.end) +
                         ",\"flags\":" + js(vs.flags) + ",\"truncated\":" + boolean(vs.truncated) + ",\"ptes\":[";
                    for (size_t p = 0; p < vs.ptes.size(); ++p) {
                        const trace::PteSnap& ps = vs.ptes[p];
                        o += (p ? "," : "") + std::string("{\"addr\":") + hex(ps.addr) + ",\"level\":" + js(ps.level) +
                             ",\"bits\":" + js(ps.bits) + ",\"pfn\":" + hex(ps.pfn) + ",\"page\":" + boolean(ps.has_page) +
                             ",\"ref\":" + num(ps.refcount) + ",\"pin\":" + num(ps.pincount) + ",\"map\":" +
                             num(ps.mapcount) + ",\"zone\":" + js(ps.zone) + ",\"anon\":" + boolean(ps.anon) +
                             ",\"excl\":" + boolean(ps.anon_exclusive) + ",\"zero\":" + boolean(ps.zero) + "}";
                    }
                    o += "]}";
                }
                o += "]}";
            }
            o += "]}";
        }
        o += "]}";
    }
    return o + "]";
}

constexpr const char* kStyle = R"CSS(
body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222}
h1{font-size:1.3em;margin:.2em 0} .dim{color:#777}
#controls{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ddd}
#slider{width:60%;vertical-align:middle}
pre,code,.mono{font-family:ui-monospace,monospace;font-size:12.5px}
#source{background:#f4f4f4;padding:.3em .6em;border-left:4px solid #36c}
.ev{white-space:pre;margin:0} .k-decision,.k-fast-stop,.k-migrate,.k-longterm{color:#a60}
.k-check-result,.k-return{font-weight:bold} .k-ref{color:#070} .k-pte{color:#666} .k-fault,.k-fault-done{color:#839}
.k-lock{color:#036} .bad{color:#c00} .ok{color:#070}
.tasks{display:flex;flex-wrap:wrap;gap:1em}
.task{border:1px solid #ccc;border-radius:6px;padding:.4em .8em;min-width:28em}
table{border-collapse:collapse;margin:.3em 0} td,th{border:1px solid #ddd;padding:1px 6px;text-align:left}
tr.pinned td{background:#fde8e8} .vma{margin-top:.4em;font-weight:bold}
)CSS";

constexpr const char* kScript = R"JS(
(function(){
var sel=0, scen=DATA[0];
function el(tag,attrs,text){var e=document.createElement(tag);for(var k in attrs)e.setAttribute(k,attrs[k]);if(text!==undefined)e.textContent=text;return e;}
function render(i){
  var st=scen.steps[i]; sel=i;
  document.getElementById('slider').value=i;
  document.getElementById('stepno').textContent='step '+(i+1)+' of '+scen.steps.length;
  document.getElementById('source').textContent=st.line+' | '+st.source;
  var ev=document.getElementById('events'); ev.innerHTML='';
  st.events.forEach(function(e){var p=el('div',{'class':'ev mono k-'+e.kind},'  '.repeat(e.depth)+(e.kind+'            ').slice(0,13)+(e.kind=='call'||e.kind=='return'?'':e.fn+': ')+e.msg);ev.appendChild(p);});
  st.compared.forEach(function(c){ev.appendChild(el('div',{'class':'ev mono '+(c.indexOf('NOT')<0?'ok':'bad')},'expect       compared '+c));});
  if(!st.events.length&&!st.compared.length)ev.appendChild(el('div',{'class':'dim'},'(no GUP, fault or page-table activity)'));
  var ts=document.getElementById('tasks'); ts.innerHTML='';
  var frames={};
  st.tasks.forEach(function(t){
    var box=el('div',{'class':'task'}); box.appendChild(el('h3',{},'task '+t.name+(t.exited?' (exited)':'')));
    t.vmas.forEach(function(v){
      box.appendChild(el('div',{'class':'vma mono'},v.start+'-'+v.end+'  '+v.flags));
      if(!v.ptes.length){box.appendChild(el('div',{'class':'dim'},'no entries'));return;}
      var tb=el('table',{'class':'ptes'}); var h=el('tr');['address','level','entry','pfn'].forEach(function(c){h.appendChild(el('th',{},c));}); tb.appendChild(h);
      v.ptes.forEach(function(p){var r=el('tr',{'class':p.pin>0?'pinned':''});[p.addr,p.level,p.bits,p.pfn].forEach(function(c){r.appendChild(el('td',{'class':'mono'},c));});tb.appendChild(r);
        if(p.page){var f=frames[p.pfn]||(frames[p.pfn]={p:p,users:[]});f.users.push(t.name+':'+p.addr);}});
      box.appendChild(tb); if(v.truncated)box.appendChild(el('div',{'class':'dim'},'(more entries not shown)'));
    });
    ts.appendChild(box);
  });
  var ft=document.getElementById('frames'); ft.innerHTML='';
  var h=el('tr');['pfn','zone','refcount','pincount','mapcount','kind','mapped by'].forEach(function(c){h.appendChild(el('th',{},c));});ft.appendChild(h);
  Object.keys(frames).forEach(function(k){var f=frames[k],p=f.p;var r=el('tr',{'class':p.pin>0?'pinned':''});
    [k,p.zone,p.ref,p.pin,p.map,p.zero?'zero page':p.anon?(p.excl?'anon, exclusive':'anon, shared'):'file/driver',f.users.join(' ')].forEach(function(c){r.appendChild(el('td',{'class':'mono'},String(c)));});ft.appendChild(r);});
  location.hash='step='+i;
}
function choose(n){scen=DATA[n];var s=document.getElementById('slider');s.max=Math.max(0,scen.steps.length-1);
  document.getElementById('title').textContent=scen.name+(scen.title?' \u2014 '+scen.title:'');
  var v=document.getElementById('verdict');v.textContent=scen.verdict+(scen.reason?': '+scen.reason:'');v.className=scen.verdict=='PASS'?'ok':'bad';
  if(scen.steps.length)render(Math.min(sel,scen.steps.length-1));}
var pick=document.getElementById('scenario');
DATA.forEach(function(s,i){pick.appendChild(el('option',{value:i},s.name));});
if(DATA.length<2)pick.style.display='none';
pick.onchange=function(){choose(+pick.value);};
document.getElementById('slider').oninput=function(){render(+this.value);};
document.getElementById('prev').onclick=function(){if(sel>0)render(sel-1);};
document.getElementById('next').onclick=function(){if(sel<scen.steps.length-1)render(sel+1);};
var m=/step=(\d+)/.exec(location.hash); if(m)sel=+m[1];
choose(0);
})();
)JS";

}  // namespace

std::string format_html(const ExplainResult& r) {
    std::string o = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>pinlab explain</title><style>";
    o += kStyle;
    o += "</style></head><body>\n<h1 id=\"title\"></h1><div id=\"verdict\"></div>\n"
         "<div id=\"controls\"><select id=\"scenario\"></select> <button id=\"prev\">&larr;</button> "
         "<input type=\"range\" id=\"slider\" min=\"0\" max=\"0\" value=\"0\"> <button id=\"next\">&rarr;</button> "
         "<span id=\"stepno\"></span><pre id=\"source\"></pre></div>\n"
         "<h2>What happened</h2><div id=\"events\"></div>\n"
         "<h2>Address spaces after the step</h2><div id=\"tasks\" class=\"tasks\"></div>\n"
         "<h2>Frames</h2><table id=\"frames\"></table>\n<script>var DATA=";
    o += data_json(r);
    o += ";</script><script>";
    o += kScript;
    o += "</script></body></html>\n";
    return o;
}

}  // namespace pl::scenario
