import collections,sys
self_c=collections.Counter(); inc=collections.Counter(); total=0; idle=0; agents=collections.Counter()
for line in open(sys.argv[1]):
    stack,_,n=line.rstrip().rpartition(' '); n=int(n)
    fr=stack.split(';')
    if 'MainThread' not in fr[0]: continue
    total+=n
    if fr[-1].startswith(('select (selectors','_run_once (asyncio/base_events.py:1886')) or 'epoll' in fr[-1] or ('select' in fr[-1] and 'selectors' in fr[-1]): idle+=n; continue
    self_c[fr[-1]]+=n
    for f in set(fr[1:]): inc[f]+=n
    a='other'
    for f in fr:
        if 'Batch.run' in f: a='batch'
        if 'CommandProcessor' in f: a='processor'; break
        if 'project' in f.lower() or 'Fold' in f or 'view_agent' in f: a='view'; break
        if 'Fetcher' in f or '_drain_messages' in f: a='fetch'; break
        if 'aiohttp' in f or 'web' in f: a='web'
    agents[a]+=n
busy=total-idle
print("total",total,"idle",idle, "busy%", round(100*busy/total,1))
print({k:round(100*v/busy,1) for k,v in agents.most_common()})
N=int(sys.argv[2]) if len(sys.argv)>2 else 35
print('--- self'); [print(f"{100*v/busy:5.1f}% {k[:150]}") for k,v in self_c.most_common(N)]
print('--- incl'); [print(f"{100*v/busy:5.1f}% {k[:150]}") for k,v in inc.most_common(2*N) if v/busy>0.015]
