// Lockstep's GraphiQL: paste the token the server printed into the Headers tab.
(function () {
  var defaultQuery = [
    '# Welcome to Lockstep. Paste your token into the Headers tab below:',
    '#   {"Authorization": "Bearer <token>"}',
    '',
    '{',
    '  me { subject role }',
    '  accounts(first: 5, orderBy: {field: NAME}) {',
    '    totalCount',
    '    nodes { name domain segment status }',
    '  }',
    '  leads(first: 5) {',
    '    nodes { email stage source account { name } }',
    '  }',
    '}',
    '',
  ].join('\n');
  // Subscriptions go over WebSocket to the same address (graphql-transport-ws);
  // GraphiQL sends the Headers tab as the connection's init payload.
  var ws = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/graphql';
  var fetcher = GraphiQL.createFetcher({ url: '/graphql', subscriptionUrl: ws });
  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      defaultHeaders: '{\n  "Authorization": "Bearer <paste the token here>"\n}',
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true,
      defaultEditorToolsVisibility: 'headers',
    })
  );
})();
